import { createPostgresPool, runFunctionMain } from '@baton/sdk';
import pg from 'pg';
import { FETCH_ORDERS, createFetchOrders } from './index';

runFunctionMain(FETCH_ORDERS, () => {
  // Business data only (DATABASE_URL): workflow state is the coordinator's.
  const pool = createPostgresPool(pg.Pool, { applicationName: `fn.${FETCH_ORDERS}`, max: 2 });
  return { definition: createFetchOrders({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${FETCH_ORDERS} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
