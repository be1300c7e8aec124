import { createPostgresPool, runFunctionMain } from '@baton/sdk';
import pg from 'pg';
import { CREATE_INVOICE, createCreateInvoice } from './index';

runFunctionMain(CREATE_INVOICE, () => {
  // Business data only (DATABASE_URL): workflow state is the coordinator's.
  const pool = createPostgresPool(pg.Pool, { applicationName: `fn.${CREATE_INVOICE}`, max: 2 });
  return { definition: createCreateInvoice({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${CREATE_INVOICE} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
