import { createPostgresPool, runFunctionMain } from '@baton/sdk';
import pg from 'pg';
import { VOID_INVOICE, createVoidInvoice } from './index';

runFunctionMain(VOID_INVOICE, () => {
  // Business data only (DATABASE_URL): workflow state is the coordinator's.
  const pool = createPostgresPool(pg.Pool, { applicationName: `fn.${VOID_INVOICE}`, max: 2 });
  return { definition: createVoidInvoice({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${VOID_INVOICE} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
