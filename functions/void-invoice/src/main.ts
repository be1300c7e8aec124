import { createPool, runFunctionMain } from '@baton/shared';
import { createVoidInvoice, VOID_INVOICE } from './index';

runFunctionMain(VOID_INVOICE, ({ config }) => {
  // Business data only: workflow state is the coordinator's.
  const pool = createPool(config.databaseUrl, {
    max: 2,
    applicationName: `fn.${VOID_INVOICE}`,
    database: config.database,
  });
  return { definition: createVoidInvoice({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${VOID_INVOICE} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
