import { createPostgresPool, runFunctionMain } from '@baton/sdk';
import pg from 'pg';
import { GENERATE_PDF, createGeneratePdf } from './index';

runFunctionMain(GENERATE_PDF, () => {
  // Business data only (DATABASE_URL): workflow state is the coordinator's.
  const pool = createPostgresPool(pg.Pool, { applicationName: `fn.${GENERATE_PDF}`, max: 2 });
  return { definition: createGeneratePdf({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${GENERATE_PDF} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
