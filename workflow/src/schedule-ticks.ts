import { CronExpressionParser } from 'cron-parser';

/**
 * Pure: which ticks of a schedule a tick message fires, by the schedule's `catchUp`, and the tick
 * times BullMQ's job scheduler encodes in its job ids. No I/O (the coordinator's `Triggers` calls it
 * with the time the tick is handled).
 *
 * A schedule's BullMQ job scheduler keeps one delayed job, for its next tick (job id
 * `repeat:<scheduleId>:<tick ms>`). While no coordinator runs, that job waits; the one that handles
 * it afterwards finds the ticks from it to now due, and BullMQ schedules the next job after now. So
 * what happens to the ticks in between is decided here:
 * - `latest` (the default, and what Baton did before `catchUp` existed: one run after an outage):
 *   one run, for the latest due tick;
 * - `none`: only a tick handled on time (within `SCHEDULE_ON_TIME_MS` of it) fires;
 * - `all`: one run per due tick, oldest first, at most `CATCH_UP_MAX_TICKS` (the latest ones).
 */

export const SCHEDULE_OVERLAPS = ['allow', 'skip', 'cancelPrevious'] as const;
export type ScheduleOverlap = (typeof SCHEDULE_OVERLAPS)[number];
export const SCHEDULE_CATCH_UPS = ['none', 'latest', 'all'] as const;
export type ScheduleCatchUp = (typeof SCHEDULE_CATCH_UPS)[number];

export const DEFAULT_SCHEDULE_OVERLAP: ScheduleOverlap = 'allow';
export const DEFAULT_SCHEDULE_CATCH_UP: ScheduleCatchUp = 'latest';

/** A tick handled at most this long after its time is on time (not missed). */
export const SCHEDULE_ON_TIME_MS = 60_000;
/** `catchUp: all` fires at most this many ticks (the latest) for one outage. */
export const CATCH_UP_MAX_TICKS = 100;

/** The tick time BullMQ's job scheduler put in a tick's job id (`repeat:<scheduleId>:<ms>`). */
export function tickTimeOfJob(jobId: string | undefined, scheduleId: string): number | undefined {
  const prefix = `repeat:${scheduleId}:`;
  if (!jobId?.startsWith(prefix)) return undefined;
  const ms = Number(jobId.slice(prefix.length));
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined;
}

/** The job id (and so the run's idempotency key, `schedule:<job id>`) BullMQ gives the tick at `ms`. */
export function tickJobId(scheduleId: string, ms: number): string {
  return `repeat:${scheduleId}:${ms}`;
}

/**
 * The ticks of `cron` from `first` (the tick whose job is handled) to `now`, oldest first: at most
 * `max`, the latest ones. `first` is always among them unless more than `max` ticks are due.
 */
export function dueTicks(
  cron: string,
  timezone: string,
  first: number,
  now: number,
  max = CATCH_UP_MAX_TICKS,
): number[] {
  const ticks: number[] = [];
  if (now >= first) {
    // Backwards from now: bounded by `max` however long the outage (a per-second cron over a week).
    const expression = CronExpressionParser.parse(cron, { tz: timezone, currentDate: new Date(now + 1) });
    while (ticks.length < max) {
      const tick = expression.prev().getTime();
      if (tick <= first) break;
      ticks.push(tick);
    }
  }
  if (ticks.length < max) ticks.push(first);
  return ticks.reverse();
}

/** The ticks to start runs for, oldest first, out of the due ones (`dueTicks`), handled at `now`. */
export function ticksToFire(due: number[], now: number, catchUp: ScheduleCatchUp): number[] {
  const latest = due[due.length - 1];
  if (latest === undefined) return [];
  const latestOnTime = now - latest <= SCHEDULE_ON_TIME_MS;
  // The usual case: one tick due, handled on time.
  if (due.length === 1 && latestOnTime) return due;
  switch (catchUp) {
    case 'none':
      return latestOnTime ? [latest] : [];
    case 'latest':
      return [latest];
    case 'all':
      return due;
  }
}
