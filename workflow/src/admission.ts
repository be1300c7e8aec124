import { z } from 'zod';
import { ExpressionError, resolveTemplate } from './expressions';

/**
 * Admission of runs, the definition's side: `rateLimit` (at most `limit` run starts per `periodMs`
 * per key) and `priority` (1 highest … 10, a number or a `{{ }}` template over `{input}`). The
 * coordinator applies them when it admits a pending run (services/coordinator/src/run-advancer.ts).
 */

export const MIN_PRIORITY = 1;
export const MAX_PRIORITY = 10;
/** A run's priority when its definition gives none. */
export const DEFAULT_PRIORITY = 5;

/** `rateLimit`: at most `limit` run starts per `periodMs` per value of `key` (JSONata over `{input}`). */
export const rateLimitSchema = z
  .object({
    limit: z.number().int().min(1).max(100_000),
    periodMs: z
      .number()
      .int()
      .min(1)
      .max(7 * 86_400_000),
    key: z.string().min(1).max(1_000).optional(),
  })
  .strict();

export type WorkflowRateLimit = z.infer<typeof rateLimitSchema>;

/** `priority`: an integer from 1 (highest) to 10, or a `{{ }}` template over `{input}` resolving to one. */
export const prioritySchema = z.union([
  z.number().int().min(MIN_PRIORITY).max(MAX_PRIORITY),
  z
    .string()
    .min(1)
    .max(1_000)
    .refine((s) => s.includes('{{'), { message: 'a priority given as text must be a {{ }} template' }),
]);

/**
 * The priority a run is admitted with: the definition's number, or its template resolved over
 * `{input}` (a number or a numeric string). Throws an ExpressionError when the template fails or
 * resolves to anything but an integer from 1 to 10.
 */
export async function runPriority(priority: number | string | undefined, input: unknown): Promise<number> {
  if (priority === undefined) return DEFAULT_PRIORITY;
  if (typeof priority === 'number') return priority;
  const value = await resolveTemplate(priority, { input });
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < MIN_PRIORITY || n > MAX_PRIORITY) {
    throw new ExpressionError(
      priority,
      `priority resolved to ${JSON.stringify(value) ?? 'nothing'}, not an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}`,
    );
  }
  return n;
}

/**
 * A run's priority as the BullMQ job priority of its steps. BullMQ takes jobs without a priority
 * (0) before every prioritized one, so every step job gets one: 1..10 as is (1 is BullMQ's highest),
 * FIFO within one.
 */
export function jobPriority(priority: number | undefined): number {
  if (priority === undefined || !Number.isInteger(priority)) return DEFAULT_PRIORITY;
  return Math.min(MAX_PRIORITY, Math.max(MIN_PRIORITY, priority));
}
