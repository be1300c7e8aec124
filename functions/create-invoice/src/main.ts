import { createPool, runFunctionMain } from '@baton/shared';
import { CREATE_INVOICE, createCreateInvoice } from './index';

runFunctionMain(CREATE_INVOICE, ({ config }) => {
  // Business data only: workflow state is the coordinator's.
  const pool = createPool(config.databaseUrl, {
    max: 2,
    applicationName: `fn.${CREATE_INVOICE}`,
    database: config.database,
  });
  return { definition: createCreateInvoice({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${CREATE_INVOICE} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
