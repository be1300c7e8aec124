import { z } from 'zod';

/**
 * The expression sandbox's limits and the environment that sets them. They belong to the language
 * (expressions.ts reads them), so they live here; the engine's `baseEnv` (engine/src/config.ts)
 * spreads `expressionEnv` in, so a bad value stops any process at start.
 */
/**
 * Hard bounds of the expression sandbox (expressions.ts): the time one evaluation (an `if:`,
 * a whole template) may run, the memory of the process it runs in, the size of a result. JSONata's
 * own guard (1 s per expression, checked between steps) applies too, whatever `timeoutMs` is.
 */
export interface ExpressionSandboxLimits {
  timeoutMs: number;
  maxMemoryMb: number;
  maxResultBytes: number;
}

export const DEFAULT_EXPRESSION_LIMITS: ExpressionSandboxLimits = {
  timeoutMs: 1_000,
  maxMemoryMb: 128,
  maxResultBytes: 4 * 1024 * 1024,
};

/** Read by every process that evaluates expressions; part of `baseEnv` so a bad value stops the start. */
export const expressionEnv = z.object({
  BATON_EXPRESSION_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(DEFAULT_EXPRESSION_LIMITS.timeoutMs),
  BATON_EXPRESSION_MAX_MB: z.coerce.number().int().min(16).max(4_096).default(DEFAULT_EXPRESSION_LIMITS.maxMemoryMb),
  BATON_EXPRESSION_MAX_RESULT_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .default(DEFAULT_EXPRESSION_LIMITS.maxResultBytes),
});

export function expressionLimitsFrom(env: z.infer<typeof expressionEnv>): ExpressionSandboxLimits {
  return {
    timeoutMs: env.BATON_EXPRESSION_TIMEOUT_MS,
    maxMemoryMb: env.BATON_EXPRESSION_MAX_MB,
    maxResultBytes: env.BATON_EXPRESSION_MAX_RESULT_BYTES,
  };
}
