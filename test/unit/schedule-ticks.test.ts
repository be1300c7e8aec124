import {
  CATCH_UP_MAX_TICKS,
  dueTicks,
  parseWorkflowDefinition,
  SCHEDULE_ON_TIME_MS,
  tickJobId,
  tickTimeOfJob,
  ticksToFire,
} from '@baton/workflow';

/** Schedule catch-up (workflow/src/schedule-ticks.ts): pure, driven with chosen times. */
const T = Date.UTC(2026, 0, 1, 0, 0, 0);
const S = 1_000;
const MIN = 60 * S;

describe('schedule ticks', () => {
  it('reads the tick time from the job id BullMQ gives it, and makes the same id back', () => {
    expect(tickTimeOfJob(`repeat:nightly.0:${T}`, 'nightly.0')).toBe(T);
    expect(tickJobId('nightly.0', T)).toBe(`repeat:nightly.0:${T}`);
    expect(tickTimeOfJob(`repeat:nightly.1:${T}`, 'nightly.0')).toBeUndefined();
    expect(tickTimeOfJob('repeat_tick_direct', 'nightly.0')).toBeUndefined();
    expect(tickTimeOfJob(undefined, 'nightly.0')).toBeUndefined();
  });

  it('lists the ticks due from the handled one to now, oldest first', () => {
    expect(dueTicks('0 */5 * * * *', 'UTC', T, T + 2 * S)).toEqual([T]);
    expect(dueTicks('0 */5 * * * *', 'UTC', T, T + 21 * MIN + 30 * S)).toEqual([
      T,
      T + 5 * MIN,
      T + 10 * MIN,
      T + 15 * MIN,
      T + 20 * MIN,
    ]);
  });

  it('bounds the ticks of a long outage to the latest CATCH_UP_MAX_TICKS', () => {
    // A per-second schedule, a day away: 86 400 ticks due, the latest 100 kept.
    const due = dueTicks('* * * * * *', 'UTC', T, T + 24 * 60 * MIN);
    expect(due).toHaveLength(CATCH_UP_MAX_TICKS);
    expect(due[due.length - 1]).toBe(T + 24 * 60 * MIN);
    expect(due[0]).toBe(T + 24 * 60 * MIN - (CATCH_UP_MAX_TICKS - 1) * S);
  });

  it('fires a tick handled on time whatever catchUp says', () => {
    for (const catchUp of ['none', 'latest', 'all'] as const) {
      expect(ticksToFire([T], T + 2 * S, catchUp)).toEqual([T]);
    }
  });

  it('after an outage: none fires nothing missed, latest one run, all every due tick', () => {
    const due = [T, T + 5 * MIN, T + 10 * MIN, T + 15 * MIN, T + 20 * MIN];
    const now = T + 21 * MIN + 30 * S; // the latest due tick is 90 s old: missed
    expect(ticksToFire(due, now, 'none')).toEqual([]);
    expect(ticksToFire(due, now, 'latest')).toEqual([T + 20 * MIN]);
    expect(ticksToFire(due, now, 'all')).toEqual(due);
    // One tick, handled late: missed too.
    expect(ticksToFire([T], T + SCHEDULE_ON_TIME_MS + 1, 'none')).toEqual([]);
    expect(ticksToFire([T], T + SCHEDULE_ON_TIME_MS + 1, 'latest')).toEqual([T]);
  });

  it('none still fires the latest tick when it is on time (the coordinator came back just before it)', () => {
    const due = [T, T + 5 * MIN, T + 10 * MIN];
    expect(ticksToFire(due, T + 10 * MIN + 30 * S, 'none')).toEqual([T + 10 * MIN]);
  });

  it('accepts overlap and catchUp on schedule triggers, and refuses other values by path', () => {
    const def = parseWorkflowDefinition({
      name: 'nightly',
      triggers: [{ schedule: { cron: '0 2 * * *', overlap: 'skip', catchUp: 'all' } }],
      steps: [{ id: 'a', function: 'f' }],
    });
    expect(def.triggers[0]).toEqual({ schedule: { cron: '0 2 * * *', overlap: 'skip', catchUp: 'all' } });
    let problems: { path: string }[] = [];
    try {
      parseWorkflowDefinition({
        name: 'nightly',
        triggers: [{ schedule: { cron: '0 2 * * *', overlap: 'queue' } }],
        steps: [{ id: 'a', function: 'f' }],
      });
    } catch (err) {
      problems = (err as { details: { path: string }[] }).details;
    }
    // The trigger kinds are a union: the problem is reported at the trigger.
    expect(problems.map((p) => p.path)).toEqual(['triggers[0]']);
  });
});
