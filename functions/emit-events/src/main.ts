import { runFunctionMain } from '@baton/sdk';
import { createEmitEvents, EMIT_EVENTS } from './index';

runFunctionMain(EMIT_EVENTS, () => ({ definition: createEmitEvents() })).catch((err: unknown) => {
  process.stderr.write(`${EMIT_EVENTS} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
