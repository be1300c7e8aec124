import { setTimeout as sleep } from 'node:timers/promises';
import fs from 'node:fs';
import path from 'node:path';
import {
  DIAMOND,
  POISON,
  diamondDefinition,
  poisonDefinition,
  runScenario,
  type ChaosSystem,
  type InvariantReport,
  type ScenarioRow,
  type SystemServers,
} from './harness';
import { PrivatePostgres, PrivateRedis } from './private-servers';

/**
 * The chaos scenarios: each starts a batch of invoice runs and runs of the diamond workflow on a
 * fresh system, injects one kind of fault mid-flight, waits until idle and checks the invariants.
 * Each returns its table row and the full invariant report (the evidence when something broke).
 */
export interface ScenarioResult {
  row: ScenarioRow;
  report: InvariantReport;
  /** Scenario-specific checks that failed (counted in lost or duplicated). */
  violations: string[];
}

type Scenario = () => Promise<ScenarioResult>;

const INVOICE_RUNS = 5;
const DIAMOND_RUNS = 3;

/** The usual load: invoice runs for cust-01..05 and diamond runs, started concurrently. */
async function load(system: ChaosSystem, invoices = INVOICE_RUNS, diamonds = DIAMOND_RUNS): Promise<void> {
  await Promise.all([system.startInvoiceRuns(invoices), system.startRuns(DIAMOND, diamonds, 'succeeded')]);
}

/** Waits (up to 30 s) until a worker holds a step of `fn`; notes `missed` if none showed, and goes on. */
async function untilMidStep(system: ChaosSystem, fn: string, missed: string): Promise<void> {
  if (!(await system.waitForStep({ function: fn, status: 'running' }, 30_000))) system.notes.push(missed);
}

async function saveDiamond(system: ChaosSystem): Promise<void> {
  await system.putWorkflow(diamondDefinition(1));
}

async function scenario(
  name: string,
  act: (system: ChaosSystem) => Promise<void>,
  verify?: (system: ChaosSystem) => Promise<{ lost?: string[]; duplicated?: string[] }>,
  idleTimeoutMs?: number,
  servers?: SystemServers,
): Promise<ScenarioResult> {
  const violations: string[] = [];
  let extra: { lost?: string[]; duplicated?: string[] } = {};
  const { row, report } = await runScenario(
    name,
    async (system) => {
      await act(system);
    },
    {
      setup: saveDiamond,
      ...(servers ? { servers } : {}),
      ...(idleTimeoutMs ? { idleTimeoutMs } : {}),
      ...(verify
        ? {
            verify: async (system: ChaosSystem) => {
              extra = await verify(system);
            },
          }
        : {}),
    },
  );
  violations.push(...(extra.lost ?? []), ...(extra.duplicated ?? []));
  row.lost += extra.lost?.length ?? 0;
  row.duplicated += extra.duplicated?.length ?? 0;
  row.notes.push(...violations.map((v) => `violation: ${v}`));
  return { row, report, violations };
}

/** kill -9 of a function while one of its steps is running; the process comes back 1 s later. */
export function killFunctionMidStep(fn = 'generate-pdf'): Scenario {
  return () =>
    scenario(`kill -9 ${fn} mid-step`, async (system) => {
      await load(system);
      await untilMidStep(system, fn, `no ${fn} step seen running: killed anyway`);
      await system.kill(fn, 'SIGKILL');
      await sleep(1_000);
      await system.startComponent(fn);
    });
}

/**
 * kill -9 of the coordinator under load at random moments (before or after a commit: whichever the
 * moment hits), twice, restarting it each time.
 */
export function killCoordinator(times = 2): Scenario {
  return () =>
    scenario('kill -9 coordinator mid-flight', async (system) => {
      await load(system);
      for (let i = 0; i < times; i++) {
        await sleep(100 + Math.floor(Math.random() * 900));
        await system.kill('coordinator', 'SIGKILL');
        await sleep(500);
        await system.startComponent('coordinator');
        if (i === 0) await load(system, 3, 2);
      }
    });
}

/** SIGTERM (a scale-down) of a function while its step runs: it finishes the attempt, then exits. */
export function sigtermFunction(fn = 'generate-pdf'): Scenario {
  return () =>
    scenario(`SIGTERM ${fn} (scale-down)`, async (system) => {
      await load(system);
      await untilMidStep(system, fn, `no ${fn} step seen running at SIGTERM`);
      await system.kill(fn, 'SIGTERM');
      // Another replica takes over the rest of the queue.
      await system.startComponent(fn);
    });
}

/**
 * Redis data loss: every key of this suite's prefix deleted while steps are in flight (the machine's
 * Redis is shared, so no FLUSHALL or restart). The reconciler rebuilds the work from PostgreSQL.
 */
export function flushRedis(): Scenario {
  return () =>
    scenario('Redis data loss (suite keys flushed)', async (system) => {
      await load(system);
      await system.waitForStep({ function: 'generate-pdf', status: 'running' }, 30_000);
      await system.flushRedis();
    });
}

/**
 * A real Redis restart, on a private `redis-server` (no persistence) that the whole system uses: kill -9
 * while steps are in flight and back empty on the same port 1 s later — or a FLUSHALL of that server.
 * Everything Redis held is gone (queues, jobs, locks, the coordinator's stream); the reconciler
 * rebuilds the work from PostgreSQL. More runs are started once it is back.
 */
export function restartPrivateRedis(mode: 'kill' | 'flushall'): Scenario {
  const name = mode === 'kill' ? 'Redis restart (private server, kill -9, empty)' : 'Redis FLUSHALL (private server)';
  return async () => {
    const redis = await PrivateRedis.start();
    try {
      return await scenario(
        name,
        async (system) => {
          await load(system);
          await untilMidStep(system, 'generate-pdf', 'no generate-pdf step seen running: fault injected anyway');
          const keys = await redis.dbSize();
          system.markFault();
          if (mode === 'kill') {
            await redis.kill();
            await sleep(1_000);
            await redis.up();
          } else {
            await redis.flushAll();
          }
          system.notes.push(`${keys} keys lost (${mode === 'kill' ? 'restarted empty' : 'FLUSHALL'})`);
          await sleep(1_000);
          await load(system, 3, 2);
        },
        undefined,
        undefined,
        { redisUrl: redis.url },
      );
    } finally {
      await redis.stop();
    }
  };
}

/**
 * A real PostgreSQL restart, on a private cluster (the Debian binaries, its own temp dir and port) that
 * the whole system uses: `pg_ctl stop -m fast` (every session ends, clean shutdown) or `-m immediate`
 * (a crash: WAL recovery at the start) while steps are in flight, started again 2 s later. Pools
 * reconnect; messages and attempts whose transaction died are retried. More runs once it is back.
 */
export function restartPrivatePostgres(mode: 'fast' | 'immediate'): Scenario {
  const name =
    mode === 'fast'
      ? 'PostgreSQL restart (private server, stop -m fast)'
      : 'PostgreSQL crash (private server, stop -m immediate)';
  return async () => {
    const server = await PrivatePostgres.start();
    try {
      return await scenario(
        name,
        async (system) => {
          await load(system);
          await untilMidStep(system, 'generate-pdf', 'no generate-pdf step seen running: fault injected anyway');
          system.markFault();
          const downAt = Date.now();
          await server.down(mode);
          await sleep(2_000);
          await server.up();
          system.notes.push(`down ${((Date.now() - downAt) / 1000).toFixed(1)} s`);
          await load(system, 3, 2);
        },
        undefined,
        undefined,
        { serverUrl: server.url },
      );
    } finally {
      await server.stop();
    }
  };
}

/** Every PostgreSQL connection of this suite's database terminated, twice, under load. */
export function terminatePostgres(): Scenario {
  return () =>
    scenario('PostgreSQL connections terminated', async (system) => {
      await load(system);
      await sleep(300);
      const first = await system.terminateDatabaseConnections();
      await sleep(1_000);
      const second = await system.terminateDatabaseConnections();
      system.notes.push(`${first} + ${second} backends terminated`);
    });
}

/** The SMTP server down for 5 s while the runs want to send: send-email retries, then succeeds. */
export function smtpDown(downMs = 5_000): Scenario {
  return () =>
    scenario('SMTP server down for a while', async (system) => {
      await system.smtp.down();
      system.markFault();
      await load(system);
      await sleep(downMs);
      await system.smtp.up();
    });
}

/** A workflow whose last step always throws: retries bounded, then compensation in reverse order. */
export function poisonJob(runs = 3): Scenario {
  return () =>
    scenario(
      'poison job (step always throws)',
      async (system) => {
        await system.putWorkflow(poisonDefinition(system.closedPort));
        await Promise.all([load(system), system.startRuns(POISON, runs, 'compensated')]);
        for (let i = 0; i < runs; i++) system.markFault();
      },
      async (system) => {
        const lost: string[] = [];
        const { rows } = await system.pool.query(
          `SELECT r.id, e.attempt, e.max_attempts FROM runs r JOIN step_executions e ON e.run_id = r.id
            WHERE r.workflow_name = $1 AND e.step_id = 'poison'`,
          [POISON],
        );
        for (const row of rows) {
          if (row.attempt !== row.max_attempts)
            lost.push(`run ${row.id}: poison step made ${row.attempt} of ${row.max_attempts} attempts`);
        }
        const compensations = await system.pool.query(
          `SELECT e.run_id, count(*)::int AS n FROM step_executions e JOIN runs r ON r.id = e.run_id
            WHERE r.workflow_name = $1 AND e.kind = 'compensation' AND e.status = 'compensated' GROUP BY e.run_id`,
          [POISON],
        );
        for (const row of compensations.rows) {
          if (row.n !== 3) lost.push(`run ${row.run_id}: ${row.n} compensations, expected 3`);
        }
        return { lost };
      },
    );
}

/** The same trigger delivered several times at once (same idempotency key): one run per key. */
export function duplicateTrigger(keys = 5, copies = 4): Scenario {
  const seen = new Map<string, Set<string>>();
  return () =>
    scenario(
      'duplicate trigger delivery',
      async (system) => {
        await Promise.all(
          Array.from({ length: keys }, async (_, k) => {
            const key = `chaos-dup-${k}`;
            const customerId = `cust-0${(k % 5) + 1}`;
            const results = await system.startRuns('invoice', copies, 'succeeded', { customerId }, key);
            seen.set(key, new Set(results.map((r) => r.runId)));
          }),
        );
        for (let i = 0; i < keys * (copies - 1); i++) system.markFault();
        await load(system, 0, DIAMOND_RUNS);
      },
      async () => {
        const duplicated: string[] = [];
        for (const [key, runIds] of seen) {
          if (runIds.size !== 1) duplicated.push(`key ${key}: ${runIds.size} runs (${[...runIds].join(', ')})`);
        }
        return { duplicated };
      },
    );
}

/** A second coordinator process racing the first on the same runs (and both reconcilers). */
export function twoCoordinators(): Scenario {
  return () =>
    scenario('two coordinators racing', async (system) => {
      await system.addComponent('coordinator-2', 'coordinator');
      system.markFault();
      await load(system, 10, 5);
    });
}

/** New versions of the invoice and diamond workflows saved while runs are in flight. */
export function definitionChanged(): Scenario {
  const before: string[] = [];
  const after: string[] = [];
  return () =>
    scenario(
      'definition changed mid-run',
      async (system) => {
        await load(system);
        before.push(...system.accepted.map((r) => r.runId));
        const invoiceV2 = `${fs.readFileSync(path.join(__dirname, '..', '..', 'workflows', 'invoice.yaml'), 'utf8').trimEnd()}\n  revision: v2\n`;
        await system.putWorkflow(invoiceV2, 'invoice');
        await system.putWorkflow(diamondDefinition(2));
        system.markFault();
        await load(system, 3, 3);
        after.push(...system.accepted.map((r) => r.runId).filter((id) => !before.includes(id)));
      },
      async (system) => {
        const lost: string[] = [];
        const { rows } = await system.pool.query(
          `SELECT id, workflow_name, workflow_version, output FROM runs WHERE id = ANY($1)`,
          [[...before, ...after]],
        );
        for (const run of rows) {
          const expected = before.includes(run.id) ? 1 : 2;
          const revision =
            run.workflow_name === DIAMOND ? Number(run.output?.revision) : run.output?.revision === 'v2' ? 2 : 1;
          if (run.workflow_version !== expected || revision !== expected)
            lost.push(
              `run ${run.id} (${run.workflow_name}) v${run.workflow_version} revision ${revision}, expected ${expected}`,
            );
        }
        return { lost };
      },
    );
}

/** Every scenario of `npm run chaos`, in order. */
export const ALL_SCENARIOS: { name: string; run: Scenario }[] = [
  { name: 'kill -9 generate-pdf mid-step', run: killFunctionMidStep('generate-pdf') },
  { name: 'kill -9 send-email mid-step', run: killFunctionMidStep('send-email') },
  { name: 'kill -9 coordinator', run: killCoordinator() },
  { name: 'SIGTERM generate-pdf', run: sigtermFunction('generate-pdf') },
  { name: 'Redis data loss', run: flushRedis() },
  { name: 'PostgreSQL connections terminated', run: terminatePostgres() },
  { name: 'SMTP down', run: smtpDown() },
  { name: 'poison job', run: poisonJob() },
  { name: 'duplicate trigger', run: duplicateTrigger() },
  { name: 'two coordinators', run: twoCoordinators() },
  { name: 'definition changed mid-run', run: definitionChanged() },
  // Real restarts, on private servers the scenario starts (the machine's servers are shared).
  { name: 'Redis restart (private server)', run: restartPrivateRedis('kill') },
  { name: 'Redis FLUSHALL (private server)', run: restartPrivateRedis('flushall') },
  { name: 'PostgreSQL restart (private server)', run: restartPrivatePostgres('fast') },
  { name: 'PostgreSQL crash (private server)', run: restartPrivatePostgres('immediate') },
];
