import { z } from 'zod';

/**
 * Retention of finished runs: how long a run is kept after it finished, by outcome. Pure: the
 * definition's `retention` block, `BATON_RETENTION` and the policy the coordinator's sweep applies
 * (services/coordinator/src/retention.ts) are all read here.
 *
 * `failed` covers every unsuccessful end: `failed`, `compensated` and `compensation_failed`.
 */

/** The outcomes a retention is given for. */
export const RETENTION_CLASSES = ['succeeded', 'failed', 'cancelled'] as const;
export type RetentionClass = (typeof RETENTION_CLASSES)[number];

/** The run statuses each retention class covers. */
export const RETENTION_STATUSES: Record<RetentionClass, readonly string[]> = {
  succeeded: ['succeeded'],
  failed: ['failed', 'compensated', 'compensation_failed'],
  cancelled: ['cancelled'],
};

/** How long to keep runs of each class, in seconds; a class left out is kept forever. */
export type RetentionPolicy = Partial<Record<RetentionClass, number>>;

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3_600, d: 86_400 };
/** Longest retention: ten years. */
const MAX_SECONDS = 3_650 * 86_400;
const DURATION = /^([1-9][0-9]{0,6})(s|m|h|d)$/;

/** `2s`, `15m`, `12h`, `7d` as seconds; undefined for anything else. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const seconds = Number(match[1]) * UNIT_SECONDS[match[2]];
  return seconds <= MAX_SECONDS ? seconds : undefined;
}

const durationSchema = z
  .string()
  .refine((s) => parseDuration(s) !== undefined, 'a duration like 30s, 15m, 12h or 7d (at most 3650d)');

/** The definition's `retention` block, durations as written. */
export const retentionSchema = z
  .object({
    succeeded: durationSchema.optional(),
    failed: durationSchema.optional(),
    cancelled: durationSchema.optional(),
  })
  .strict();

export type RetentionSpec = z.infer<typeof retentionSchema>;

/** A checked `retention` block in seconds. */
export function retentionPolicyOf(spec: RetentionSpec | undefined): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const cls of RETENTION_CLASSES) {
    const text = spec?.[cls];
    const seconds = text === undefined ? undefined : parseDuration(text);
    if (seconds !== undefined) policy[cls] = seconds;
  }
  return policy;
}

/**
 * `BATON_RETENTION`: `succeeded=7d,failed=30d` (each class optional; empty keeps everything).
 * Throws naming the part it refuses.
 */
export function parseRetentionEnv(text: string | undefined): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const part of (text ?? '').split(',').map((p) => p.trim())) {
    if (!part) continue;
    const [cls, duration, extra] = part.split('=').map((p) => p.trim());
    if (!(RETENTION_CLASSES as readonly string[]).includes(cls) || extra !== undefined) {
      throw new Error(`'${part}': expected <${RETENTION_CLASSES.join('|')}>=<duration>`);
    }
    const seconds = duration === undefined ? undefined : parseDuration(duration);
    if (seconds === undefined) throw new Error(`'${part}': a duration like 30s, 15m, 12h or 7d`);
    policy[cls as RetentionClass] = seconds;
  }
  return policy;
}

/**
 * The effective retention of a workflow: its own block class by class, the global default for the
 * classes it leaves out.
 */
export function effectiveRetention(own: RetentionPolicy, global: RetentionPolicy): RetentionPolicy {
  return { ...global, ...own };
}
