import type { Queue } from 'bullmq';
import { CronExpressionParser } from 'cron-parser';
import type { Pool } from './db/pool';
import {
  NotFoundError,
  DEFAULT_SCHEDULE_CATCH_UP,
  DEFAULT_SCHEDULE_OVERLAP,
  type ScheduleCatchUp,
  type ScheduleOverlap,
} from '@baton/workflow';
import type { TriggerMessage } from './protocol';
import { COORDINATOR_JOB_OPTIONS } from './queues';
import { listLatestDefinitions } from './workflow/store';

/**
 * Schedules are derived state: the `schedule` triggers of each workflow's latest version, minus the
 * ones paused through the API, become BullMQ job schedulers on the coordinator queue. BullMQ makes
 * a scheduler produce one job per tick however many coordinators run, which is what makes every
 * tick start exactly one run. `syncSchedules` is idempotent; the coordinator runs it at start and
 * on every reconcile pass, the gateway after a PUT.
 */

export interface ScheduleSpec {
  /** `<workflow>.<trigger index>`: stable while the trigger keeps its place in the list. */
  id: string;
  workflow: string;
  version: number;
  cron: string;
  timezone: string;
  input: unknown;
  /** What a tick does while a run it started is active (default `allow`). */
  overlap: ScheduleOverlap;
  /** What fires for ticks missed while no coordinator ran (default `latest`). */
  catchUp: ScheduleCatchUp;
}

export interface ScheduleView extends ScheduleSpec {
  paused: boolean;
  /** ISO time of the next tick; null when paused. */
  nextFireAt: string | null;
}

export async function desiredSchedules(pool: Pool): Promise<ScheduleSpec[]> {
  const specs: ScheduleSpec[] = [];
  for (const stored of await listLatestDefinitions(pool)) {
    stored.definition.triggers.forEach((trigger, index) => {
      if (!('schedule' in trigger)) return;
      specs.push({
        id: `${stored.name}.${index}`,
        workflow: stored.name,
        version: stored.version,
        cron: trigger.schedule.cron,
        timezone: trigger.schedule.timezone ?? 'UTC',
        input: trigger.schedule.input ?? {},
        overlap: trigger.schedule.overlap ?? DEFAULT_SCHEDULE_OVERLAP,
        catchUp: trigger.schedule.catchUp ?? DEFAULT_SCHEDULE_CATCH_UP,
      });
    });
  }
  return specs;
}

async function pausedIds(pool: Pool): Promise<Set<string>> {
  const { rows } = await pool.query<{ id: string }>('SELECT id FROM schedule_states WHERE paused');
  return new Set(rows.map((r) => r.id));
}

export async function syncSchedules(
  pool: Pool,
  coordinator: Queue,
): Promise<{ upserted: string[]; removed: string[] }> {
  const [desired, paused, existing] = await Promise.all([
    desiredSchedules(pool),
    pausedIds(pool),
    coordinator.getJobSchedulers(0, -1),
  ]);
  const active = desired.filter((d) => !paused.has(d.id));
  const existingById = new Map(existing.map((e) => [e.key, e]));
  const upserted: string[] = [];
  for (const spec of active) {
    const current = existingById.get(spec.id);
    if (current && current.pattern === spec.cron && (current.tz ?? 'UTC') === spec.timezone) continue;
    const data: TriggerMessage = { type: 'schedule.fire', scheduleId: spec.id, workflow: spec.workflow };
    await coordinator.upsertJobScheduler(
      spec.id,
      { pattern: spec.cron, tz: spec.timezone },
      {
        name: data.type,
        data,
        opts: {
          attempts: COORDINATOR_JOB_OPTIONS.attempts,
          backoff: COORDINATOR_JOB_OPTIONS.backoff,
          removeOnComplete: COORDINATOR_JOB_OPTIONS.removeOnComplete,
          removeOnFail: COORDINATOR_JOB_OPTIONS.removeOnFail,
        },
      },
    );
    upserted.push(spec.id);
  }
  const keep = new Set(active.map((a) => a.id));
  const removed: string[] = [];
  for (const scheduler of existing) {
    if (keep.has(scheduler.key)) continue;
    await coordinator.removeJobScheduler(scheduler.key);
    removed.push(scheduler.key);
  }
  return { upserted, removed };
}

export async function listSchedules(pool: Pool, coordinator: Queue): Promise<ScheduleView[]> {
  const [desired, paused, existing] = await Promise.all([
    desiredSchedules(pool),
    pausedIds(pool),
    coordinator.getJobSchedulers(0, -1),
  ]);
  const nextById = new Map(existing.map((e) => [e.key, e.next]));
  return desired.map((spec) => {
    const isPaused = paused.has(spec.id);
    const next = nextById.get(spec.id);
    return {
      ...spec,
      paused: isPaused,
      nextFireAt: isPaused ? null : next ? new Date(next).toISOString() : nextTick(spec),
    };
  });
}

/** The next tick by the cron pattern itself (when the scheduler is not synced yet). */
function nextTick(spec: ScheduleSpec): string | null {
  try {
    return CronExpressionParser.parse(spec.cron, { tz: spec.timezone }).next().toDate().toISOString();
  } catch {
    return null;
  }
}

export async function setSchedulePaused(
  pool: Pool,
  coordinator: Queue,
  id: string,
  paused: boolean,
): Promise<ScheduleView> {
  const spec = (await desiredSchedules(pool)).find((s) => s.id === id);
  if (!spec) throw new NotFoundError('schedule', id);
  await pool.query(
    `INSERT INTO schedule_states (id, paused) VALUES ($1, $2)
     ON CONFLICT (id) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()`,
    [id, paused],
  );
  await syncSchedules(pool, coordinator);
  return (await listSchedules(pool, coordinator)).find((s) => s.id === id) as ScheduleView;
}
