import { createPool, runFunctionMain } from '@baton/shared';
import { createFetchOrders, FETCH_ORDERS } from './index';

runFunctionMain(FETCH_ORDERS, ({ config }) => {
  // Business data only: workflow state is the coordinator's.
  const pool = createPool(config.databaseUrl, {
    max: 2,
    applicationName: `fn.${FETCH_ORDERS}`,
    database: config.database,
  });
  return { definition: createFetchOrders({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${FETCH_ORDERS} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
