import { runFunctionMain } from '@baton/sdk';
import { createTransform, TRANSFORM } from './index';

runFunctionMain(TRANSFORM, () => ({ definition: createTransform() })).catch((err: unknown) => {
  process.stderr.write(`${TRANSFORM} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
