import { createPool, runFunctionMain } from '@baton/shared';
import { createGeneratePdf, GENERATE_PDF } from './index';

runFunctionMain(GENERATE_PDF, ({ config }) => {
  // Business data only: workflow state is the coordinator's.
  const pool = createPool(config.databaseUrl, {
    max: 2,
    applicationName: `fn.${GENERATE_PDF}`,
    database: config.database,
  });
  return { definition: createGeneratePdf({ pool }), close: () => pool.end() };
}).catch((err: unknown) => {
  process.stderr.write(`${GENERATE_PDF} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
