import { runFunctionMain } from '@baton/sdk';
import { NAME, shout } from './index';

// The container's entry (node dist/src/main.js): reads REDIS_URL (or REDIS_HOST/REDIS_PORT),
// BATON_QUEUE_PREFIX, METRICS_PORT (/healthz, /metrics) and LOG_LEVEL; stops cleanly on SIGTERM.
// Read your own settings here with parseEnv (a bad value: one line on stderr, exit 1), open what
// the function needs, and return { definition, close } to release it on shutdown.
runFunctionMain(NAME, () => shout).catch((err: unknown) => {
  process.stderr.write(`${NAME} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
