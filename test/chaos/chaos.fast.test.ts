import {
  flushRedis,
  killCoordinator,
  killOneOfTwoCoordinatorsSharded,
  onRedisCluster,
  PRECONDITION_MISSED,
  sigtermFunction,
  type ScenarioResult,
} from './scenarios';

/**
 * The fast subset of the chaos suite (in `npm test`): real processes, real PostgreSQL and Redis, one
 * fault each under a short load (30 run starts at 10/s, checked against the external ledger). The
 * whole suite is `npm run chaos` (test/chaos/all.chaos.ts, docs/RELIABILITY.md).
 */
const SCENARIO_TIMEOUT_MS = 240_000;
const SIZE = { runs: 30, rate: 10 };
const SEED = 1;

function expectClean({ row, report, violations }: ScenarioResult): void {
  const evidence = JSON.stringify({ row, report, violations }, null, 2);
  if (row.lost || row.duplicated || row.stuck || row.internal || report.crashed.length)
    throw new Error(`invariants broken:\n${evidence}`);
  expect(row.faults).toBeGreaterThan(0);
  expect(row.ok).toBeGreaterThan(0);
  // The fault landed where the scenario's name says (e.g. a step was running when it was killed).
  expect(row.notes.filter((n) => n.startsWith(PRECONDITION_MISSED))).toEqual([]);
}

describe('chaos (fast subset)', () => {
  it(
    'SIGTERM of a function mid-step: the step is neither lost nor recorded twice',
    async () => {
      expectClean(await sigtermFunction('generate-pdf')(SIZE)(SEED));
    },
    SCENARIO_TIMEOUT_MS,
  );

  it(
    "Redis data loss (this suite's keys deleted): the reconciler rebuilds the work",
    async () => {
      expectClean(await flushRedis(SIZE)(SEED));
    },
    SCENARIO_TIMEOUT_MS,
  );

  it(
    'kill -9 of the coordinator under load: nothing lost, stuck or recorded twice',
    async () => {
      expectClean(await killCoordinator(1)(SIZE)(SEED));
    },
    SCENARIO_TIMEOUT_MS,
  );

  it(
    'kill -9 of one coordinator of two on a sharded inbox, on a Redis Cluster: the other takes its entries over',
    async () => {
      const result = await onRedisCluster(killOneOfTwoCoordinatorsSharded(8))(SIZE)(SEED);
      expectClean(result);
      expect(result.violations).toEqual([]);
    },
    SCENARIO_TIMEOUT_MS,
  );
});
