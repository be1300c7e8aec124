import { setTimeout as sleep } from 'node:timers/promises';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import {
  DIAMOND,
  POISON,
  diamondDefinition,
  diamondEffects,
  ledgerStep,
  poisonDefinition,
  runScenario,
  type ChaosSystem,
  type InvariantReport,
  type ScenarioRow,
  type SystemOptions,
  type SystemServers,
} from './harness';
import { rng, type LoadOptions, type RunRequest } from './load';
import { PrivatePostgres, PrivateRedis } from './private-servers';
import { inboxKey, INBOX_GROUP } from '@baton/engine';
import { TestRedisCluster } from '../support/redis-cluster';

/**
 * The chaos scenarios. Each runs on a fresh system under continuous load (CHAOS_RUNS run starts, 200
 * by default, at CHAOS_RATE per second, 10 by default: diamond runs whose every step records its
 * effect in the external ledger, one in eight an invoice run whose e-mail the SMTP server counts),
 * injects its fault at a moment the seed picks inside the load window, waits until idle and checks
 * the invariants of docs/RELIABILITY.md. A scenario is a function of its seed (fault timing, load
 * jitter, failpoint draws); it returns its table row and the full invariant report.
 */
export interface ScenarioResult {
  row: ScenarioRow;
  report: InvariantReport;
  /** Scenario-specific checks that failed (counted in lost or duplicated). */
  violations: string[];
}

export type Scenario = (seed: number) => Promise<ScenarioResult>;

export interface ScenarioSize {
  /** Run starts of the load (default CHAOS_RUNS or 200). */
  runs?: number;
  /** Run starts per second (default CHAOS_RATE or 10). */
  rate?: number;
}

const envNumber = (name: string, fallback: number): number => {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? value : fallback;
};
export const DEFAULT_RUNS = envNumber('CHAOS_RUNS', 200);
export const DEFAULT_RATE = envNumber('CHAOS_RATE', 10);

/** What a scenario's act sees: its seed's generator and the load window. */
export interface Ctx {
  seed: number;
  random: () => number;
  runs: number;
  rate: number;
  /** How long the load lasts (runs / rate). */
  windowMs: number;
  /** Sleeps until a seeded moment between `from` and `to` (fractions of the load window). */
  faultAt(from?: number, to?: number): Promise<void>;
}

/** The usual mix: diamond runs (ledger effects) and, one in eight, an invoice run (e-mail). */
export function standardRequest(seed: number): (i: number) => RunRequest {
  return (i) =>
    i % 8 === 0
      ? {
          workflow: 'invoice',
          path: '/invoice/start',
          body: { customerId: `cust-0${((i / 8) % 5) + 1}` },
          idempotencyKey: `chaos-${seed}-${i}`,
          expect: 'succeeded',
        }
      : {
          workflow: DIAMOND,
          path: `/v1/workflows/${DIAMOND}/runs`,
          body: { input: {} },
          idempotencyKey: `chaos-${seed}-${i}`,
          expect: 'succeeded',
          effects: diamondEffects,
        };
}

interface Spec {
  name: string;
  act: (system: ChaosSystem, ctx: Ctx) => Promise<void>;
  verify?: (system: ChaosSystem, ctx: Ctx) => Promise<{ lost?: string[]; duplicated?: string[] }>;
  setup?: (system: ChaosSystem, ctx: Ctx) => Promise<void>;
  idleTimeoutMs?: number;
  servers?: SystemServers;
  options?: (ctx: Ctx) => SystemOptions;
  /** The load: default the standard mix; `false`: none (the act starts its own runs). */
  load?: false | ((system: ChaosSystem, ctx: Ctx) => Partial<LoadOptions>);
  size?: ScenarioSize;
}

async function scenario(spec: Spec, seed: number): Promise<ScenarioResult> {
  const runs = spec.size?.runs ?? DEFAULT_RUNS;
  const rate = spec.size?.rate ?? DEFAULT_RATE;
  const random = rng(seed * 7919 + spec.name.length);
  const windowMs = (runs / rate) * 1000;
  let loadStartedAt = Date.now();
  const ctx: Ctx = {
    seed,
    random,
    runs,
    rate,
    windowMs,
    faultAt: async (from = 0.2, to = 0.6) => {
      const at = loadStartedAt + windowMs * (from + (to - from) * random());
      await sleep(Math.max(0, at - Date.now()));
    },
  };
  const violations: string[] = [];
  let extra: { lost?: string[]; duplicated?: string[] } = {};
  const { row, report } = await runScenario(spec.name, (system) => spec.act(system, ctx), {
    seed,
    setup: async (system) => {
      await system.putWorkflow(diamondDefinition(system.ledger.url, 1));
      await spec.setup?.(system, ctx);
      loadStartedAt = Date.now();
    },
    ...((spec.servers ?? currentServers) ? { servers: spec.servers ?? currentServers } : {}),
    ...(spec.options ? { options: spec.options(ctx) } : {}),
    ...(spec.idleTimeoutMs ? { idleTimeoutMs: spec.idleTimeoutMs } : {}),
    ...(spec.load === false
      ? {}
      : {
          load: (system: ChaosSystem) => ({
            runs,
            ratePerSecond: rate,
            random: rng(seed),
            request: standardRequest(seed),
            ...(spec.load ? spec.load(system, ctx) : {}),
          }),
        }),
    ...(spec.verify
      ? {
          verify: async (system: ChaosSystem) => {
            extra = await spec.verify!(system, ctx);
          },
        }
      : {}),
  });
  violations.push(...(extra.lost ?? []), ...(extra.duplicated ?? []));
  row.lost += extra.lost?.length ?? 0;
  row.duplicated += extra.duplicated?.length ?? 0;
  row.notes.push(...violations.slice(0, 5).map((v) => `violation: ${v}`));
  if (violations.length > 5) row.notes.push(`… ${violations.length - 5} more violations`);
  return { row, report, violations };
}

/** A scenario factory: its spec, given the size. */
const define =
  (build: (size: ScenarioSize) => Spec) =>
  (size: ScenarioSize = {}): Scenario =>
  (seed) =>
    scenario({ ...build(size), size }, seed);

/** How a scenario's notes mark a fault that did not land where its name says (chaos.fast asserts none). */
export const PRECONDITION_MISSED = 'precondition not met:';

/**
 * Waits (up to 30 s) until a worker holds a step of `fn`. If none showed, the fault is injected
 * anyway, but the row says its precondition was not met (`PRECONDITION_MISSED`): a scenario named
 * "mid-step" whose fault landed between steps proved nothing, and the fast suite fails on it.
 */
async function untilMidStep(system: ChaosSystem, fn: string, missed: string): Promise<void> {
  if (!(await system.waitForStep({ function: fn, status: 'running' }, 30_000)))
    system.notes.push(`${PRECONDITION_MISSED} ${missed}`);
}

/**
 * Polls a count query (`SELECT … AS n`) until it reaches `target` (or the timeout); returns the last
 * count (-1: no answer). `pollMs`: 20 where a kill must land at a precise moment of a fan-out.
 */
async function untilCount(
  system: ChaosSystem,
  sql: string,
  params: unknown[],
  target: number,
  timeoutMs = 120_000,
  pollMs = 250,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = -1;
  while (Date.now() < deadline) {
    n = await system.pool
      .query(sql, params)
      .then((r) => Number(r.rows[0].n))
      .catch(() => -1);
    if (n >= target) return n;
    await sleep(pollMs);
  }
  return n;
}

/** Run statuses and error codes of a workflow's runs. */
async function runsOf(
  system: ChaosSystem,
  workflow: string,
): Promise<{ id: string; status: string; code: string | null; output: unknown }[]> {
  const { rows } = await system.pool.query(
    `SELECT id, status, error->>'code' AS code, output FROM runs WHERE workflow_name = $1`,
    [workflow],
  );
  return rows as { id: string; status: string; code: string | null; output: unknown }[];
}

// ---- the original fifteen, now under load -------------------------------------------------------

/** kill -9 of a function while one of its steps is running; the process comes back 1 s later. */
export const killFunctionMidStep = (fn = 'generate-pdf') =>
  define(() => ({
    name: `kill -9 ${fn} mid-step`,
    act: async (system, ctx) => {
      await ctx.faultAt();
      await untilMidStep(system, fn, `no ${fn} step seen running: killed anyway`);
      await system.kill(fn, 'SIGKILL');
      await sleep(1_000);
      await system.startComponent(fn);
    },
  }));

/** kill -9 of the coordinator at seeded moments under load (before or after a commit), restarted 0.5 s later. */
export const killCoordinator = (times = 2) =>
  define(() => ({
    name: 'kill -9 coordinator mid-flight',
    act: async (system, ctx) => {
      for (let i = 0; i < times; i++) {
        await ctx.faultAt(0.1 + (0.8 * i) / times, 0.1 + (0.8 * (i + 1)) / times);
        await system.kill('coordinator', 'SIGKILL');
        await sleep(500);
        await system.startComponent('coordinator');
      }
    },
  }));

/** SIGTERM (a scale-down) of a function while its step runs: it finishes the attempt, then exits. */
export const sigtermFunction = (fn = 'generate-pdf') =>
  define(() => ({
    name: `SIGTERM ${fn} (scale-down)`,
    act: async (system, ctx) => {
      await ctx.faultAt();
      await untilMidStep(system, fn, `no ${fn} step seen running at SIGTERM`);
      await system.kill(fn, 'SIGTERM');
      await system.startComponent(fn);
    },
  }));

/** Every key of this suite's prefix deleted under load (the machine's Redis is shared: no FLUSHALL). */
export const flushRedis = define(() => ({
  name: 'Redis data loss (suite keys flushed)',
  act: async (system, ctx) => {
    await ctx.faultAt();
    await system.flushRedis();
  },
}));

/** A private redis-server killed (back empty 1 s later) or FLUSHALLed under load. */
export const restartPrivateRedis = (mode: 'kill' | 'flushall') =>
  define(() => ({
    name: mode === 'kill' ? 'Redis restart (private server, kill -9, empty)' : 'Redis FLUSHALL (private server)',
    act: async (system, ctx) => {
      const redis = privateRedis.get(system.redisUrl)!;
      await ctx.faultAt();
      const keys = await redis.dbSize();
      system.markFault();
      if (mode === 'kill') {
        await redis.kill();
        await sleep(1_000);
        await redis.up();
      } else await redis.flushAll();
      system.notes.push(`${keys} keys lost (${mode === 'kill' ? 'restarted empty' : 'FLUSHALL'})`);
    },
  }));

/** A private PostgreSQL stopped (`fast`) or crashed (`immediate`) under load, back 2 s later. */
export const restartPrivatePostgres = (mode: 'fast' | 'immediate') =>
  define(() => ({
    name:
      mode === 'fast'
        ? 'PostgreSQL restart (private server, stop -m fast)'
        : 'PostgreSQL crash (private server, stop -m immediate)',
    act: async (system, ctx) => {
      const server = privatePostgres.get(system.serverUrl)!;
      await ctx.faultAt();
      system.markFault();
      const downAt = Date.now();
      await server.down(mode);
      await sleep(2_000);
      await server.up();
      system.notes.push(`down ${((Date.now() - downAt) / 1000).toFixed(1)} s`);
    },
  }));

/** Every PostgreSQL connection of this suite's database terminated, twice, under load. */
export const terminatePostgres = define(() => ({
  name: 'PostgreSQL connections terminated',
  act: async (system, ctx) => {
    await ctx.faultAt();
    const first = await system.terminateDatabaseConnections();
    await sleep(1_000);
    const second = await system.terminateDatabaseConnections();
    system.notes.push(`${first} + ${second} backends terminated`);
  },
}));

/** The SMTP server down for 5 s under load: send-email retries, then succeeds. */
export const smtpDown = (downMs = 5_000) =>
  define(() => ({
    name: 'SMTP server down for a while',
    act: async (system, ctx) => {
      await ctx.faultAt();
      await system.smtp.down();
      system.markFault();
      await sleep(downMs);
      await system.smtp.up();
    },
  }));

/** A workflow whose last step always throws: retries bounded, then compensation in reverse order. */
export const poisonJob = (runs = 3) =>
  define(() => ({
    name: 'poison job (step always throws)',
    setup: async (system) => {
      await system.putWorkflow(poisonDefinition(system.closedPort));
    },
    act: async (system, ctx) => {
      await ctx.faultAt();
      await system.startRuns(POISON, runs, 'compensated');
      for (let i = 0; i < runs; i++) system.markFault();
    },
    verify: async (system) => {
      const lost: string[] = [];
      const { rows } = await system.pool.query(
        `SELECT r.id, e.attempt, e.max_attempts FROM runs r JOIN step_executions e ON e.run_id = r.id
          WHERE r.workflow_name = $1 AND e.step_id = 'poison'`,
        [POISON],
      );
      for (const row of rows)
        if (row.attempt !== row.max_attempts)
          lost.push(`run ${row.id}: poison step made ${row.attempt} of ${row.max_attempts} attempts`);
      const compensations = await system.pool.query(
        `SELECT e.run_id, count(*)::int AS n FROM step_executions e JOIN runs r ON r.id = e.run_id
          WHERE r.workflow_name = $1 AND e.kind = 'compensation' AND e.status = 'compensated' GROUP BY e.run_id`,
        [POISON],
      );
      for (const row of compensations.rows)
        if (row.n !== 3) lost.push(`run ${row.run_id}: ${row.n} compensations, expected 3`);
      return { lost };
    },
  }));

/** The same trigger delivered 4 times at once (same idempotency key), for 5 keys, under load. */
export const duplicateTrigger = (keys = 5, copies = 4) =>
  define(() => {
    const seen = new Map<string, Set<string>>();
    return {
      name: 'duplicate trigger delivery',
      act: async (system, ctx) => {
        await ctx.faultAt();
        await Promise.all(
          Array.from({ length: keys }, async (_, k) => {
            const key = `chaos-dup-${ctx.seed}-${k}`;
            const results = await system.startRuns(DIAMOND, copies, 'succeeded', {}, key, diamondEffects);
            seen.set(key, new Set(results.map((r) => r.runId)));
          }),
        );
        for (let i = 0; i < keys * (copies - 1); i++) system.markFault();
      },
      verify: async () => {
        const duplicated: string[] = [];
        for (const [key, runIds] of seen)
          if (runIds.size !== 1) duplicated.push(`key ${key}: ${runIds.size} runs (${[...runIds].join(', ')})`);
        return { duplicated };
      },
    };
  });

/** A second coordinator process racing the first on the same runs (and both reconcilers). */
export const twoCoordinators = define(() => ({
  name: 'two coordinators racing',
  act: async (system, ctx) => {
    await ctx.faultAt(0.05, 0.2);
    await system.addComponent('coordinator-2', 'coordinator');
    system.markFault();
  },
}));

/** Inbox entries each consumer holds unacknowledged, over `shards` shards (XPENDING summaries). */
async function pendingByConsumer(system: ChaosSystem, shards: number): Promise<Map<string, number>> {
  const held = new Map<string, number>();
  for (let shard = 0; shard < shards; shard++) {
    const summary = (await system.redis.xpending(inboxKey(system.prefix, shard), INBOX_GROUP)) as [
      number,
      string | null,
      string | null,
      [string, string][] | null,
    ];
    for (const [consumer, count] of summary[3] ?? []) held.set(consumer, (held.get(consumer) ?? 0) + Number(count));
  }
  return held;
}

/**
 * Two coordinator processes on a sharded inbox (BATON_INBOX_SHARDS, every replica reading every
 * shard); one is frozen (SIGSTOP) at a moment it holds inbox entries it has read and not
 * acknowledged, then killed (SIGKILL) and not brought back. The other takes its entries over
 * (the per-shard claim) and finishes every run; at the end no shard holds an entry.
 */
export const killOneOfTwoCoordinatorsSharded = (shards = 8) =>
  define(() => {
    let stranded = 0;
    return {
      name: `kill -9 one of two coordinators on ${shards} inbox shards`,
      options: () => ({ env: { '*': { BATON_INBOX_SHARDS: String(shards) } } }),
      setup: async (system) => {
        await system.addComponent('coordinator-2', 'coordinator');
      },
      act: async (system, ctx) => {
        await ctx.faultAt(0.2, 0.5);
        const pid = system.pid('coordinator');
        const deadline = Date.now() + 30_000;
        // Frozen first, so what it holds is known before it dies; thawed and tried again when it
        // happened to hold nothing.
        while (Date.now() < deadline) {
          system.signal('coordinator', 'SIGSTOP');
          const held = await pendingByConsumer(system, shards);
          stranded = [...held].filter(([consumer]) => consumer.includes(`:${pid}:`)).reduce((n, [, c]) => n + c, 0);
          if (stranded > 0) break;
          system.signal('coordinator', 'SIGCONT');
          await sleep(5);
        }
        if (!stranded) system.notes.push(`${PRECONDITION_MISSED} the coordinator held no inbox entry when killed`);
        await system.kill('coordinator', 'SIGKILL');
        system.notes.push(`killed holding ${stranded} unacknowledged inbox entries; coordinator-2 alone after`);
      },
      verify: async (system) => {
        // The runs can all end before the claim: the reconciler repairs a run whose report the dead
        // coordinator held. The claim comes once its entries have been idle claimIdleMs, later on a
        // loaded machine: what is left is counted once no shard holds anything, or after a minute.
        const leftOver = async (): Promise<string[]> => {
          const lost: string[] = [];
          const held = await pendingByConsumer(system, shards);
          for (const [consumer, count] of held)
            if (count) lost.push(`${count} inbox entries still pending for ${consumer}`);
          for (let shard = 0; shard < shards; shard++) {
            const length = await system.redis.xlen(inboxKey(system.prefix, shard));
            if (length) lost.push(`inbox shard ${shard} still holds ${length} entries`);
          }
          return lost;
        };
        const deadline = Date.now() + 60_000;
        let lost = await leftOver();
        while (lost.length && Date.now() < deadline) {
          await sleep(250);
          lost = await leftOver();
        }
        return { lost };
      },
    };
  });

/** New versions of the invoice and diamond workflows saved while runs are in flight, under load. */
export const definitionChanged = define(() => {
  let putStartedAt = 0;
  let putEndedAt = 0;
  return {
    name: 'definition changed mid-run',
    act: async (system, ctx) => {
      await ctx.faultAt();
      putStartedAt = Date.now();
      const invoiceV2 = `${fs.readFileSync(path.join(__dirname, '..', '..', 'workflows', 'invoice.yaml'), 'utf8').trimEnd()}\n  revision: v2\n`;
      await system.putWorkflow(invoiceV2, 'invoice');
      await system.putWorkflow(diamondDefinition(system.ledger.url, 2));
      putEndedAt = Date.now();
      system.markFault();
    },
    verify: async (system) => {
      const lost: string[] = [];
      // Answered before the new versions were saved: v1; sent after: v2; in between: either, but
      // the run's output must come from the version it is pinned to.
      const when = new Map(system.requests.filter((r) => r.runId).map((r) => [r.runId!, r]));
      const { rows } = await system.pool.query(
        `SELECT id, workflow_name, workflow_version, output FROM runs WHERE id = ANY($1) AND status = 'succeeded'`,
        [[...when.keys()]],
      );
      for (const run of rows) {
        const r = when.get(run.id)!;
        const revision =
          run.workflow_name === DIAMOND ? Number(run.output?.revision) : run.output?.revision === 'v2' ? 2 : 1;
        const expected = r.answeredAt < putStartedAt ? 1 : r.sentAt > putEndedAt ? 2 : run.workflow_version;
        if (run.workflow_version !== expected || revision !== run.workflow_version)
          lost.push(
            `run ${run.id} (${run.workflow_name}) v${run.workflow_version} revision ${revision}, expected ${expected}`,
          );
      }
      return { lost };
    },
  };
});

// ---- new: the failpoint, poison outputs, hostile expressions, parked runs, stops and outages ----

/**
 * kill at the failpoint after the handler, before the report (BATON_FAILPOINT=after-handler:exit:N in
 * http-request, the function of every ledger step): the effect reached the ledger, Baton never heard
 * of it; the job is re-run by the next worker once its lock expires and the ledger sees the same key
 * again — a replay it absorbs (re-delivered), never a second effect (duplicated).
 */
export const failpointAfterHandler = (exits = 3) =>
  define(() => ({
    name: 'kill -9 after the handler, before the report (failpoint)',
    options: (ctx) => ({
      failpoint: {
        component: 'http-request',
        spec: `after-handler:exit:${20 + Math.floor(ctx.random() * 60)}`,
        exits,
        seed: ctx.seed,
      },
    }),
    // Each interrupted job waits for BullMQ's stalled check (lock 30 s, check every 30 s).
    idleTimeoutMs: 180_000,
    act: async () => undefined,
    verify: async (system) => {
      const lost: string[] = [];
      if (system.failpointExits === 0) lost.push('the failpoint never fired');
      system.notes.push(`${system.ledger.redelivered()} effects re-delivered to the ledger (absorbed by key)`);
      return { lost };
    },
  }));

/**
 * Poison outputs: a step whose output holds U+0000 (GET /nul) and one whose output is 2 MB (GET
 * /blob). The coordinator's report guard: the first run succeeds with U+FFFD in place of the NUL,
 * the second fails with OUTPUT_TOO_LARGE; neither strands the run, and the load goes on.
 */
export const poisonOutput = (count = 5) =>
  define(() => ({
    name: 'poison output (NUL, 2 MB)',
    setup: async (system) => {
      const get = (id: string, url: string) => ({
        id,
        function: 'http-request',
        input: { url, method: 'GET', timeoutMs: 10_000 },
      });
      await system.putWorkflow({ name: 'chaos-nul', steps: [get('nul', `${system.ledger.url}/nul`)] });
      await system.putWorkflow({ name: 'chaos-big', steps: [get('big', `${system.ledger.url}/blob?bytes=2000000`)] });
    },
    act: async (system, ctx) => {
      await ctx.faultAt();
      await Promise.all([
        system.startRuns('chaos-nul', count, 'succeeded'),
        system.startRuns('chaos-big', count, 'failed'),
      ]);
      for (let i = 0; i < 2 * count; i++) system.markFault();
    },
    verify: async (system) => {
      const lost: string[] = [];
      for (const run of await runsOf(system, 'chaos-nul'))
        if (run.status === 'succeeded' && !JSON.stringify(run.output).includes('\uFFFD'))
          lost.push(`chaos-nul run ${run.id}: output without U+FFFD`);
      for (const run of await runsOf(system, 'chaos-big'))
        if (run.status === 'failed' && run.code !== 'OUTPUT_TOO_LARGE')
          lost.push(`chaos-big run ${run.id}: failed with ${run.code}, expected OUTPUT_TOO_LARGE`);
      return { lost };
    },
  }));

/**
 * Hostile expressions: an `if:` with catastrophic backtracking and an input template asking for a
 * 200 MB string. Each run must end `failed` with EXPRESSION_FAILED, and the load's plain runs (started
 * before, during and after them) must finish: one hostile run must not stall the coordinator.
 */
export const hostileExpressions = (count = 3) =>
  define(() => ({
    name: 'hostile expressions (ReDoS if:, 200 MB $pad)',
    idleTimeoutMs: 150_000,
    setup: async (system) => {
      const step = (extra: Record<string, unknown>) => ({
        ...ledgerStep('h', system.ledger.url, { workflow: 'hostile' }),
        ...extra,
      });
      await system.putWorkflow({
        name: 'chaos-redos',
        steps: [step({ if: '$match("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", /^(a+)+$/)' })],
      });
      const pad = step({});
      (pad.input as Record<string, unknown>).body = { padding: '{{ $pad("", 200000000) }}' };
      await system.putWorkflow({ name: 'chaos-pad', steps: [pad] });
    },
    act: async (system, ctx) => {
      await ctx.faultAt(0.1, 0.3);
      await Promise.all([
        system.startRuns('chaos-redos', count, 'failed'),
        system.startRuns('chaos-pad', count, 'failed'),
      ]);
      for (let i = 0; i < 2 * count; i++) system.markFault();
    },
    verify: async (system) => {
      const lost: string[] = [];
      for (const wf of ['chaos-redos', 'chaos-pad'])
        for (const run of await runsOf(system, wf))
          if (run.status === 'failed' && run.code !== 'EXPRESSION_FAILED')
            lost.push(`${wf} run ${run.id}: failed with ${run.code}, expected EXPRESSION_FAILED`);
      return { lost };
    },
  }));

/** A workflow that sleeps, then records its effect. */
function napDefinition(ledgerUrl: string, durationMs: number): Record<string, unknown> {
  return {
    name: 'chaos-nap',
    steps: [
      { id: 'nap', sleep: { durationMs } },
      ledgerStep('after', ledgerUrl, { needs: ['nap'], workflow: 'chaos-nap' }),
    ],
  };
}
/** A workflow that parks until `event` (matching its input's key, when `byKey`), then records its effect. */
function parkDefinition(ledgerUrl: string, name: string, event: string, byKey: boolean): Record<string, unknown> {
  return {
    name,
    steps: [
      {
        id: 'park',
        waitForEvent: { name: event, ...(byKey ? { match: 'event.key = input.key' } : {}), timeoutMs: 600_000 },
      },
      ledgerStep('after', ledgerUrl, { needs: ['park'], workflow: name }),
    ],
  };
}
const afterEffect = (runId: string): string[] => [`${runId}:after`];

async function postEvent(system: ChaosSystem, name: string, payload: unknown, key?: string): Promise<string[]> {
  const res = await system.request('POST', `/v1/events/${name}`, { payload, ...(key ? { idempotencyKey: key } : {}) });
  const body = (await res.json()) as { runIds?: string[] };
  if (res.status !== 202 && res.status !== 200) throw new Error(`POST /v1/events/${name}: ${res.status}`);
  return body.runIds ?? [];
}

/**
 * 700 runs parked on waitForEvent and 20 sleeping runs, then this suite's Redis keys wiped (the
 * sleeps' delayed messages are lost; the reconciler re-arms them from PostgreSQL), then the event:
 * every parked run and every sleeper must finish, under load.
 */
export const parkedRunsRedisWipe = (parked = 700, sleepers = 20) =>
  define(() => ({
    name: `${parked} parked waitForEvent runs + sleepers through a Redis wipe`,
    idleTimeoutMs: 240_000,
    setup: async (system) => {
      await system.putWorkflow(parkDefinition(system.ledger.url, 'chaos-park', 'chaos.release', false));
      await system.putWorkflow(napDefinition(system.ledger.url, 4_000));
    },
    act: async (system, ctx) => {
      for (let i = 0; i < parked; i += 50)
        await system.startRuns('chaos-park', Math.min(50, parked - i), 'succeeded', {}, undefined, afterEffect);
      const waiting = await untilCount(
        system,
        `SELECT count(*)::int AS n FROM step_executions e JOIN runs r ON r.id = e.run_id
          WHERE r.workflow_name = 'chaos-park' AND e.step_id = 'park'`,
        [],
        parked,
      );
      if (waiting < parked) system.notes.push(`only ${waiting} of ${parked} parked before the wipe`);
      await system.startRuns('chaos-nap', sleepers, 'succeeded', {}, undefined, afterEffect);
      await untilCount(
        system,
        `SELECT count(*)::int AS n FROM step_executions e JOIN runs r ON r.id = e.run_id
          WHERE r.workflow_name = 'chaos-nap' AND e.step_id = 'nap'`,
        [],
        sleepers,
        30_000,
      );
      await ctx.faultAt(0, 0.1);
      const keys = await system.flushRedis();
      system.notes.push(`${keys} keys wiped with ${parked} runs parked and ${sleepers} asleep`);
      await sleep(2_000);
      await postEvent(system, 'chaos.release', { at: Date.now() }, `chaos-release-${ctx.seed}`);
    },
  }));

/**
 * SIGSTOP of one coordinator (of two) for longer than its PostgreSQL idle-in-transaction timeout
 * (lowered to 5 s here: BATON_PG_IDLE_TX_TIMEOUT_MS) and the inbox claim time, then SIGCONT: the
 * frozen one's open transaction is ended by the server, its row locks released; the other one takes
 * its unacknowledged inbox entries; the woken one must not apply anything twice.
 */
export const sigstopCoordinator = (stopMs = 12_000) =>
  define(() => ({
    name: 'SIGSTOP coordinator past its idle-in-transaction timeout',
    options: () => ({ env: { coordinator: { BATON_PG_IDLE_TX_TIMEOUT_MS: '5000' } } }),
    setup: async (system) => {
      await system.addComponent('coordinator-2', 'coordinator');
    },
    act: async (system, ctx) => {
      await ctx.faultAt(0.1, 0.3);
      system.signal('coordinator', 'SIGSTOP');
      await sleep(stopMs);
      system.signal('coordinator', 'SIGCONT');
      system.notes.push(`stopped ${stopMs / 1000} s (idle-in-transaction timeout 5 s)`);
    },
  }));

/** The private PostgreSQL down for `downMs` (2 min by default: CHAOS_PG_DOWN_MS) while the load goes on. */
export const postgresDownUnderLoad = (downMs = envNumber('CHAOS_PG_DOWN_MS', 120_000)) =>
  define((size) => ({
    name: `PostgreSQL down ${Math.round(downMs / 1000)} s under load (private server)`,
    idleTimeoutMs: 240_000,
    // The load spans the outage: 20 s before, the outage, 20 s after.
    load: () => ({ ratePerSecond: (size.runs ?? DEFAULT_RUNS) / ((downMs + 40_000) / 1000) }),
    act: async (system) => {
      const server = privatePostgres.get(system.serverUrl)!;
      await sleep(20_000);
      system.markFault();
      await server.down('fast');
      await sleep(downMs);
      await server.up();
      system.notes.push(`down ${Math.round(downMs / 1000)} s`);
    },
  }));

/**
 * max_connections reached: a private PostgreSQL with max_connections = 60; the harness takes every
 * free slot (superuser slots included) for 15 s under load, then gives them back.
 */
export const maxConnections = (holdMs = 15_000) =>
  define(() => ({
    name: 'max_connections reached (private server)',
    idleTimeoutMs: 180_000,
    act: async (system, ctx) => {
      await ctx.faultAt(0.1, 0.3);
      system.markFault();
      const held: pg.Client[] = [];
      for (let i = 0; i < 200; i++) {
        const c = new pg.Client({ connectionString: system.databaseUrl, connectionTimeoutMillis: 3_000 });
        c.on('error', () => undefined);
        try {
          await c.connect();
          held.push(c);
        } catch {
          break;
        }
      }
      system.notes.push(`${held.length} connections held ${holdMs / 1000} s (max_connections 60)`);
      await sleep(holdMs);
      await Promise.all(held.map((c) => c.end().catch(() => undefined)));
    },
  }));

/**
 * The waiting kinds through a Redis wipe: sleepers, runs parked on waitForEvent (half cancelled,
 * half released by events after the wipe), event-triggered runs, and a schedule ticking every 2 s
 * (its ticks must go on after the wipe: the coordinator re-creates its scheduler).
 */
export const waitingKindsRedisWipe = (count = 20) =>
  define(() => {
    let wipedAt = 0;
    return {
      name: 'sleep / waitForEvent / cancel / event / schedule through a Redis wipe',
      idleTimeoutMs: 180_000,
      setup: async (system) => {
        const url = system.ledger.url;
        await system.putWorkflow(napDefinition(url, 5_000));
        await system.putWorkflow(parkDefinition(url, 'chaos-wait', 'chaos.go', true));
        await system.putWorkflow({
          name: 'chaos-evt',
          triggers: [{ event: { name: 'chaos.start' } }],
          steps: [ledgerStep('after', url, { workflow: 'chaos-evt' })],
        });
        await system.putWorkflow({
          name: 'chaos-tick',
          triggers: [{ schedule: { cron: '*/2 * * * * *' } }],
          steps: [ledgerStep('after', url, { workflow: 'chaos-tick' })],
        });
      },
      act: async (system, ctx) => {
        await ctx.faultAt(0.1, 0.3);
        await system.startRuns('chaos-nap', count, 'succeeded', {}, undefined, afterEffect);
        const waiting = await Promise.all(
          Array.from({ length: count }, async (_, i) => {
            const [r] = await system.startRuns(
              'chaos-wait',
              1,
              i % 2 ? 'succeeded' : 'cancelled',
              { key: `k${i}` },
              undefined,
              i % 2 ? afterEffect : undefined,
            );
            return r.runId;
          }),
        );
        for (let i = 0; i < count; i++) {
          const ids = await postEvent(system, 'chaos.start', { n: i }, `chaos-start-${ctx.seed}-${i}`);
          for (const id of ids)
            system.accepted.push({ runId: id, workflow: 'chaos-evt', expect: 'succeeded', effects: afterEffect(id) });
        }
        await untilCount(
          system,
          `SELECT count(*)::int AS n FROM step_executions e JOIN runs r ON r.id = e.run_id
            WHERE r.workflow_name IN ('chaos-nap', 'chaos-wait') AND e.step_id IN ('nap', 'park')`,
          [],
          2 * count,
          30_000,
        );
        for (let i = 0; i < count; i += 2) {
          const res = await system.request('POST', `/v1/runs/${waiting[i]}/cancel`, {});
          if (res.status !== 202) system.notes.push(`cancel ${waiting[i]}: ${res.status}`);
        }
        await sleep(500);
        wipedAt = Date.now();
        await system.flushRedis();
        await sleep(1_000);
        for (let i = 1; i < count; i += 2)
          await postEvent(system, 'chaos.go', { key: `k${i}` }, `chaos-go-${ctx.seed}-${i}`);
        // Ticks after the wipe, then the schedule paused so that the system can go idle.
        await sleep(8_000);
        const res = await system.request('PUT', '/v1/schedules/chaos-tick.0', { paused: true });
        if (res.status !== 200) system.notes.push(`pause schedule: ${res.status}`);
        await sleep(2_500);
        for (const run of await runsOf(system, 'chaos-tick'))
          system.accepted.push({
            runId: run.id,
            workflow: 'chaos-tick',
            expect: 'succeeded',
            effects: afterEffect(run.id),
          });
      },
      verify: async (system) => {
        const lost: string[] = [];
        const { rows } = await system.pool.query(
          `SELECT count(*)::int AS n FROM runs WHERE workflow_name = 'chaos-tick' AND created_at > to_timestamp($1 / 1000.0)`,
          [wipedAt + 1_000],
        );
        if (rows[0].n === 0) lost.push('no schedule tick after the Redis wipe');
        system.notes.push(`${rows[0].n} schedule ticks after the wipe`);
        return { lost };
      },
    };
  });

/**
 * One run of 200 steps (the most a definition may have): 199 each returning a 1 000 000-byte output
 * (under BATON_MAX_OUTPUT_BYTES, 1 MiB), then one recording its effect in the ledger; under the usual
 * load, on a private redis-server (200 MB of reports must not land on the shared one).
 */
export const wideRun = (steps = 200, bytes = 1_000_000) =>
  define(() => {
    let wide = '';
    return {
      name: `${steps}-step run with 1 MB outputs`,
      idleTimeoutMs: 300_000,
      setup: async (system) => {
        const blob = (id: string) => ({
          id,
          function: 'http-request',
          input: { url: `${system.ledger.url}/blob?bytes=${bytes - 200}`, method: 'GET', timeoutMs: 30_000 },
        });
        await system.putWorkflow({
          name: 'chaos-wide',
          steps: [
            ...Array.from({ length: steps - 1 }, (_, i) => blob(`s${i}`)),
            {
              ...ledgerStep('after', system.ledger.url, { workflow: 'chaos-wide' }),
              needs: Array.from({ length: steps - 1 }, (_, i) => `s${i}`),
            },
          ],
          output: { done: true },
        });
      },
      act: async (system, ctx) => {
        await ctx.faultAt(0, 0.1);
        system.markFault();
        const [{ runId }] = await system.startRuns('chaos-wide', 1, 'succeeded', {}, undefined, afterEffect);
        wide = runId;
      },
      verify: async (system) => {
        const { rows } = await system.pool.query(
          `SELECT r.status, extract(epoch FROM r.finished_at - r.created_at)::float8 AS seconds,
                (SELECT count(*)::int FROM step_executions e WHERE e.run_id = r.id AND e.status = 'succeeded') AS done
           FROM runs r WHERE r.id = $1`,
          [wide],
        );
        const r = rows[0] as { status: string; seconds: number | null; done: number } | undefined;
        system.notes.push(`the wide run: ${r?.status}, ${r?.done} steps succeeded, ${r?.seconds?.toFixed(1) ?? '?'} s`);
        return {};
      },
    };
  });

// ---- fan-out and child runs under kill -9 of the coordinator (issue #14) ------------------------

/** The ledger call of one forEach item: keyed `<run>:<step>:<index>`, as ctx.idempotencyKey is. */
function itemLedgerInput(ledgerUrl: string, workflow: string, stepId: string): Record<string, unknown> {
  return {
    url: `${ledgerUrl}/effect`,
    method: 'POST',
    headers: { 'Idempotency-Key': `{{ run.id }}:${stepId}:{{ index }}` },
    body: {
      run: '{{ run.id }}',
      step: stepId,
      index: '{{ index }}',
      item: '{{ item }}',
      workflow,
      // 5–24 ms at the ledger: items overlap, and a kill lands between their reports.
      delayMs: '{{ 5 + index % 20 }}',
    },
    timeoutMs: 10_000,
  };
}

/** A forEach over `input.items` (capped at `concurrency` in flight, or not), each item a ledger effect, then one more. */
function eachDefinition(ledgerUrl: string, name: string, concurrency?: number): Record<string, unknown> {
  return {
    name,
    description: 'chaos suite: a forEach whose every item records its effect in the ledger',
    steps: [
      {
        id: 'items',
        forEach: '{{ input.items }}',
        ...(concurrency ? { concurrency } : {}),
        function: 'http-request',
        input: itemLedgerInput(ledgerUrl, name, 'items'),
        retry: { attempts: 8, backoff: { type: 'exponential', delayMs: 200, maxDelayMs: 5_000 } },
      },
      ledgerStep('after', ledgerUrl, { needs: ['items'], workflow: name }),
    ],
    output: { count: '{{ $count(steps.items.output) }}' },
  };
}

/** Items of these runs' forEach steps that have succeeded (step_fanouts, kept by the trigger of migration 006). */
const ITEMS_DONE = `SELECT COALESCE(sum(succeeded), 0)::int AS n FROM step_fanouts WHERE run_id = ANY($1)`;
/** Items of these runs' forEach steps created so far. */
const ITEMS_CREATED = `SELECT COALESCE(sum(total), 0)::int AS n FROM step_fanouts WHERE run_id = ANY($1)`;

/** kill -9 of the coordinator, restarted 0.5 s later (as the "kill -9 coordinator" scenario does). */
async function killCoordinatorOnce(system: ChaosSystem): Promise<void> {
  await system.kill('coordinator', 'SIGKILL');
  await sleep(500);
  await system.startComponent('coordinator');
}

/**
 * Checks what a forEach of `items` ledger calls left: every key `<run>:<step>:<index>` in the ledger
 * once (one body; no other key of the run's step), the step's output `items` entries in list order
 * (entry i is item i's answer), every item row succeeded once.
 */
async function checkForEach(
  system: ChaosSystem,
  runId: string,
  stepId: string,
  items: number,
): Promise<{ lost: string[]; duplicated: string[]; redelivered: number }> {
  const lost: string[] = [];
  const duplicated: string[] = [];
  let redelivered = 0;
  for (let i = 0; i < items; i++) {
    const key = `${runId}:${stepId}:${i}`;
    const entry = system.ledger.entries.get(key);
    if (!entry) lost.push(`run ${runId}: no effect for item ${i} (key ${key})`);
    else {
      redelivered += entry.hits - 1;
      if (entry.bodies.size > 1) duplicated.push(`run ${runId}: key ${key} with ${entry.bodies.size} bodies`);
      if (entry.first.index !== i)
        duplicated.push(`run ${runId}: key ${key} carries index ${String(entry.first.index)}`);
    }
  }
  const prefix = `${runId}:${stepId}:`;
  const extra = [...system.ledger.entries.keys()].filter(
    (k) => k.startsWith(prefix) && !(Number(k.slice(prefix.length)) < items),
  );
  if (extra.length) duplicated.push(`run ${runId}: ${extra.length} effects under unexpected keys (${extra[0]}…)`);
  const { rows } = await system.pool.query(
    `SELECT output, status FROM step_executions
      WHERE run_id = $1 AND step_id = $2 AND parent_execution_id IS NULL AND superseded_at IS NULL`,
    [runId, stepId],
  );
  const output = rows[0]?.output as { body?: { index?: unknown; key?: unknown } }[] | undefined;
  if (rows.length !== 1 || !Array.isArray(output)) {
    lost.push(`run ${runId}: step ${stepId} ${rows.length} executions, output ${JSON.stringify(output)?.slice(0, 80)}`);
  } else {
    if (output.length !== items)
      lost.push(`run ${runId}: step ${stepId} output has ${output.length} of ${items} entries`);
    const misplaced = output.findIndex((o, i) => o?.body?.index !== i || o?.body?.key !== `${prefix}${i}`);
    if (misplaced >= 0)
      lost.push(`run ${runId}: step ${stepId} output[${misplaced}] is ${JSON.stringify(output[misplaced]?.body)}`);
  }
  const counts = await system.pool.query(
    `SELECT count(*) FILTER (WHERE superseded_at IS NULL)::int AS live,
            count(*) FILTER (WHERE superseded_at IS NULL AND status = 'succeeded')::int AS succeeded,
            count(DISTINCT item_index)::int AS indexes
       FROM step_executions i
      WHERE i.run_id = $1 AND i.step_id = $2 AND i.parent_execution_id IS NOT NULL`,
    [runId, stepId],
  );
  const c = counts.rows[0] as { live: number; succeeded: number; indexes: number };
  if (c.live !== items || c.succeeded !== items || c.indexes !== items)
    lost.push(`run ${runId}: step ${stepId} items in force ${c.live}, succeeded ${c.succeeded}, indexes ${c.indexes}`);
  return { lost, duplicated, redelivered };
}

/**
 * kill -9 of the coordinator during a forEach of `items` items (one run capped at 50 in flight, one
 * uncapped, started together), under the usual load: three kills, the first 0–300 ms (seeded) after
 * the uncapped run's items were created (its 1 000 jobs being enqueued), the others when a seeded
 * share of the items has succeeded; the coordinator back 0.5 s later each time. Every item's effect
 * must reach the ledger exactly once (key `<run>:items:<index>`), each step's output holds `items`
 * entries in list order, the runs succeed.
 */
export const killCoordinatorDuringForEach = (items = 1_000, kills = 3) =>
  define(() => {
    const fanRuns: { runId: string; workflow: string }[] = [];
    let redelivered = 0;
    const effects = (runId: string) => [
      ...Array.from({ length: items }, (_, i) => `${runId}:items:${i}`),
      `${runId}:after`,
    ];
    return {
      name: `kill -9 coordinator during a ${items}-item forEach`,
      idleTimeoutMs: 300_000,
      setup: async (system) => {
        await system.putWorkflow(eachDefinition(system.ledger.url, 'chaos-each-capped', 50));
        await system.putWorkflow(eachDefinition(system.ledger.url, 'chaos-each-open'));
      },
      act: async (system, ctx) => {
        await ctx.faultAt(0, 0.1);
        const list = Array.from({ length: items }, (_, i) => i);
        // Both at once: the uncapped run's jobs are enqueued while the capped run's first 50 run.
        fanRuns.push(
          ...(await Promise.all(
            ['chaos-each-capped', 'chaos-each-open'].map(async (workflow) => {
              const [{ runId }] = await system.startRuns(workflow, 1, 'succeeded', { items: list }, undefined, effects);
              return { runId, workflow };
            }),
          )),
        );
        const ids = fanRuns.map((r) => r.runId);
        const open = fanRuns[1].runId;
        const total = items * fanRuns.length;
        for (let k = 0; k < kills; k++) {
          let target: number;
          let seen: number;
          let when: string;
          if (k === 0) {
            // Kill 1: 0–300 ms (seeded) after the uncapped run's items exist, while its jobs are
            // being enqueued after the commit that created them, or its first reports applied.
            target = 1;
            seen = await untilCount(system, ITEMS_CREATED, [[open]], 1, 60_000, 20);
            const ms = Math.floor(ctx.random() * 300);
            await sleep(ms);
            when = `${ms} ms after the uncapped run's items were created`;
          } else {
            // Kills 2…: when a seeded share of all items (10–90 %, one slice each) has succeeded.
            const share = 0.1 + (0.8 * (k - 1 + ctx.random())) / (kills - 1);
            target = Math.floor(share * total);
            seen = await untilCount(system, ITEMS_DONE, [ids], target, 180_000, 20);
            when = `${Math.round(share * 100)} % of the items done`;
          }
          const done = await untilCount(system, ITEMS_DONE, [ids], 0, 1_000, 20);
          if (seen < target || done >= total)
            system.notes.push(`${PRECONDITION_MISSED} kill ${k + 1} not mid-fan-out (${done}/${total} items done)`);
          await killCoordinatorOnce(system);
          system.notes.push(`kill ${k + 1} ${when}: ${done}/${total} items done`);
        }
      },
      verify: async (system) => {
        const lost: string[] = [];
        const duplicated: string[] = [];
        for (const { runId } of fanRuns) {
          const r = await checkForEach(system, runId, 'items', items);
          lost.push(...r.lost);
          duplicated.push(...r.duplicated);
          redelivered += r.redelivered;
        }
        const { rows } = await system.pool.query(
          `SELECT r.workflow_name, r.status, extract(epoch FROM r.finished_at - r.created_at)::float8 AS seconds,
                  (SELECT count(*)::int FROM step_executions i WHERE i.run_id = r.id AND i.superseded_at IS NOT NULL) AS superseded
             FROM runs r WHERE r.id = ANY($1) ORDER BY r.workflow_name`,
          [fanRuns.map((r) => r.runId)],
        );
        for (const r of rows)
          system.notes.push(
            `${r.workflow_name}: ${r.status} in ${Number(r.seconds ?? 0).toFixed(1)} s, ${r.superseded} superseded executions`,
          );
        system.notes.push(`${items * fanRuns.length} item effects, ${redelivered} re-delivered (absorbed by key)`);
        return { lost, duplicated };
      },
    };
  });

/** A child workflow: one ledger effect naming what it was started for (`input.for`). */
function childDefinition(ledgerUrl: string): Record<string, unknown> {
  const work = ledgerStep('work', ledgerUrl, { workflow: 'chaos-child' });
  const input = work.input as { body: Record<string, unknown> };
  // 0.5–1.7 s at the ledger: children are running when the coordinator dies.
  input.body = { ...input.body, for: '{{ input.for }}', delayMs: '{{ 500 + (input.index % 5) * 300 }}' };
  return {
    name: 'chaos-child',
    input: { type: 'object', required: ['for', 'index'] },
    steps: [work],
    output: { for: '{{ input.for }}', key: '{{ steps.work.output.body.key }}' },
  };
}

/** A parent: a plain `workflow:` step and a forEach of `items` child runs (4 at a time), then a ledger step. */
function parentDefinition(ledgerUrl: string): Record<string, unknown> {
  return {
    name: 'chaos-parent',
    steps: [
      { id: 'one', workflow: 'chaos-child', input: { for: '{{ run.id }}:one', index: 0 }, needs: [] },
      {
        id: 'many',
        forEach: '{{ input.items }}',
        concurrency: 4,
        workflow: 'chaos-child',
        input: { for: '{{ run.id }}:many:{{ index }}', index: '{{ index }}' },
        needs: [],
      },
      ledgerStep('after', ledgerUrl, { needs: ['one', 'many'], workflow: 'chaos-parent' }),
    ],
  };
}

/** Child runs of a parent, with the item each awaits (NULL for the plain step). */
interface ChildRow {
  id: string;
  status: string;
  parent_run_id: string;
  parent_step_id: string;
  parent_execution_id: string;
  item_index: number | null;
}

/**
 * kill -9 of the coordinator while child runs run: `parents` parent runs started across the load
 * window, each with a `workflow:` step and a forEach of `items` children (4 in flight), every child
 * one ledger effect of 0.5–1.7 s; three kills at seeded moments, each once a child run is `running`,
 * the coordinator back 0.5 s later. Every child run must be created once per item (runs counted by
 * parent_execution_id and by item), every child's effect reach the ledger once, every parent succeed.
 */
export const killCoordinatorWhileChildrenRun = (parents = 6, items = 20, kills = 3) =>
  define(() => {
    const parentIds: string[] = [];
    const childrenOf = (system: ChaosSystem, ids: string[]) =>
      system.pool
        .query(
          `SELECT c.id, c.status, c.parent_run_id, c.parent_step_id, c.parent_execution_id, i.item_index
             FROM runs c LEFT JOIN step_executions i ON i.id = c.parent_execution_id
            WHERE c.parent_run_id = ANY($1)`,
          [ids],
        )
        .then((r) => r.rows as ChildRow[]);
    return {
      name: 'kill -9 coordinator while child runs run',
      idleTimeoutMs: 300_000,
      setup: async (system) => {
        await system.putWorkflow(childDefinition(system.ledger.url));
        await system.putWorkflow(parentDefinition(system.ledger.url));
      },
      act: async (system, ctx) => {
        const list = Array.from({ length: items }, (_, i) => i);
        const start = async (n: number) => {
          for (const { runId } of await system.startRuns(
            'chaos-parent',
            n,
            'succeeded',
            { items: list },
            undefined,
            (id) => [`${id}:after`],
          ))
            parentIds.push(runId);
        };
        // Half the parents at the start, the rest spread over the first half of the window.
        const starting = (async () => {
          await start(Math.ceil(parents / 2));
          for (let i = Math.ceil(parents / 2); i < parents; i++) {
            await sleep(ctx.windowMs / 2 / parents);
            await start(1);
          }
        })();
        for (let k = 0; k < kills; k++) {
          await ctx.faultAt(0.1 + (0.7 * k) / kills, 0.1 + (0.7 * (k + 1)) / kills);
          const running = await untilCount(
            system,
            `SELECT count(*)::int AS n FROM runs WHERE parent_run_id IS NOT NULL AND status = 'running'`,
            [],
            1,
            30_000,
            20,
          );
          if (running < 1) system.notes.push(`${PRECONDITION_MISSED} kill ${k + 1}: no child run running`);
          const kids = await childrenOf(system, parentIds);
          await killCoordinatorOnce(system);
          system.notes.push(
            `kill ${k + 1} with ${running} children running, ${kids.filter((c) => c.status === 'succeeded').length}/${
              kids.length
            } created ones done`,
          );
        }
        await starting;
        // Once the parents are done, their children are checked like every accepted run.
        await untilCount(
          system,
          `SELECT count(*)::int AS n FROM runs WHERE id = ANY($1) AND status IN ('succeeded', 'failed', 'compensated', 'compensation_failed', 'cancelled')`,
          [parentIds],
          parentIds.length,
          240_000,
          20,
        );
        for (const child of await childrenOf(system, parentIds))
          system.accepted.push({
            runId: child.id,
            workflow: 'chaos-child',
            expect: 'succeeded',
            effects: [`${child.id}:work`],
          });
      },
      verify: async (system) => {
        const lost: string[] = [];
        const duplicated: string[] = [];
        const children = await childrenOf(system, parentIds);
        // Executions awaiting children, superseded ones included: a second child for an item shows here.
        const { rows: awaiting } = await system.pool.query(
          `SELECT run_id, step_id, item_index, count(*)::int AS executions
             FROM step_executions
            WHERE run_id = ANY($1) AND step_id IN ('one', 'many') AND NOT (step_id = 'many' AND parent_execution_id IS NULL)
            GROUP BY 1, 2, 3`,
          [parentIds],
        );
        for (const a of awaiting as {
          run_id: string;
          step_id: string;
          item_index: number | null;
          executions: number;
        }[])
          if (a.executions !== 1)
            duplicated.push(`run ${a.run_id}: ${a.executions} executions of ${a.step_id}[${a.item_index ?? '-'}]`);
        const perExecution = new Map<string, number>();
        for (const c of children)
          perExecution.set(c.parent_execution_id, (perExecution.get(c.parent_execution_id) ?? 0) + 1);
        for (const [execution, n] of perExecution)
          if (n !== 1) duplicated.push(`execution ${execution}: ${n} child runs`);
        // What each child was started for, from the ledger: one effect (one key) per `for`.
        const keysFor = new Map<string, Set<string>>();
        for (const [key, entry] of system.ledger.entries) {
          const target = entry.first.for;
          if (typeof target !== 'string') continue;
          const set = keysFor.get(target) ?? new Set<string>();
          set.add(key);
          keysFor.set(target, set);
        }
        for (const parent of parentIds) {
          const expected = [`${parent}:one`, ...Array.from({ length: items }, (_, i) => `${parent}:many:${i}`)];
          for (const target of expected) {
            const keys = keysFor.get(target);
            if (!keys) lost.push(`${target}: no child effect in the ledger`);
            else if (keys.size > 1) duplicated.push(`${target}: ${keys.size} child effects (${[...keys].join(', ')})`);
          }
          const { rows } = await system.pool.query(
            `SELECT output FROM step_executions
              WHERE run_id = $1 AND step_id = 'many' AND parent_execution_id IS NULL AND superseded_at IS NULL`,
            [parent],
          );
          const many = rows[0]?.output as { for?: string }[] | undefined;
          if (!Array.isArray(many) || many.length !== items || many.some((o, i) => o?.for !== `${parent}:many:${i}`))
            lost.push(`run ${parent}: output of many ${JSON.stringify(many)?.slice(0, 120)}`);
        }
        // Child runs per awaiting step or item: exactly one each.
        const perItem = new Map<string, number>();
        for (const c of children) {
          const slot = `${c.parent_run_id}:${c.parent_step_id}[${c.item_index ?? '-'}]`;
          perItem.set(slot, (perItem.get(slot) ?? 0) + 1);
        }
        for (const [slot, n] of perItem) if (n !== 1) duplicated.push(`${slot}: ${n} child runs`);
        const expectedChildren = parentIds.length * (items + 1);
        if (children.length !== expectedChildren)
          (children.length > expectedChildren ? duplicated : lost).push(
            `${children.length} child runs for ${expectedChildren} awaiting steps and items`,
          );
        const notDone = children.filter((c) => c.status !== 'succeeded');
        const { rows: took } = await system.pool.query(
          `SELECT max(extract(epoch FROM finished_at - created_at))::float8 AS s FROM runs WHERE id = ANY($1)`,
          [parentIds],
        );
        system.notes.push(`parents done in ${Number(took[0]?.s ?? 0).toFixed(1)} s at most`);
        system.notes.push(
          `${parentIds.length} parents, ${children.length} child runs (${expectedChildren} expected), ${notDone.length} not succeeded`,
        );
        return { lost, duplicated };
      },
    };
  });

// ---- private servers --------------------------------------------------------------------------

/** The private servers in use, by URL (a scenario's act finds its own). */
const privateRedis = new Map<string, PrivateRedis>();
const privatePostgres = new Map<string, PrivatePostgres>();

/** Runs `scenario` on a private redis-server. */
function onPrivateRedis(build: (size?: ScenarioSize) => Scenario): (size?: ScenarioSize) => Scenario {
  return (size) => async (seed) => {
    const redis = await PrivateRedis.start();
    privateRedis.set(redis.url, redis);
    try {
      return await withServers(build(size), { redisUrl: redis.url })(seed);
    } finally {
      privateRedis.delete(redis.url);
      await redis.stop();
    }
  };
}

/** Runs `scenario` on a 3-master Redis Cluster of its own (test/support/redis-cluster.ts). */
export function onRedisCluster(build: (size?: ScenarioSize) => Scenario): (size?: ScenarioSize) => Scenario {
  return (size) => async (seed) => {
    const cluster = await TestRedisCluster.start(3);
    try {
      return await withServers(build(size), { redisClusterNodes: cluster.nodes })(seed);
    } finally {
      await cluster.stop();
    }
  };
}

/** Runs `scenario` on a private PostgreSQL cluster. */
function onPrivatePostgres(
  build: (size?: ScenarioSize) => Scenario,
  settings: { maxConnections?: number } = {},
): (size?: ScenarioSize) => Scenario {
  return (size) => async (seed) => {
    const server = await PrivatePostgres.start(settings);
    privatePostgres.set(server.url, server);
    try {
      return await withServers(build(size), { serverUrl: server.url })(seed);
    } finally {
      privatePostgres.delete(server.url);
      await server.stop();
    }
  };
}

/** The servers a scenario's system uses are passed through this (set per call, read by runScenario). */
let currentServers: SystemServers | undefined;
function withServers(run: Scenario, servers: SystemServers): Scenario {
  return async (seed) => {
    currentServers = servers;
    try {
      return await run(seed);
    } finally {
      currentServers = undefined;
    }
  };
}
/** The private servers of the scenario running now (one at a time: maxWorkers 1). */
export function serversInUse(): SystemServers | undefined {
  return currentServers;
}

/** Every scenario of `npm run chaos`, in order. */
export const ALL_SCENARIOS: { name: string; run: (size?: ScenarioSize) => Scenario }[] = [
  { name: 'kill -9 generate-pdf mid-step', run: killFunctionMidStep('generate-pdf') },
  { name: 'kill -9 send-email mid-step', run: killFunctionMidStep('send-email') },
  { name: 'kill -9 coordinator', run: killCoordinator() },
  { name: 'SIGTERM generate-pdf', run: sigtermFunction('generate-pdf') },
  { name: 'Redis data loss', run: flushRedis },
  { name: 'PostgreSQL connections terminated', run: terminatePostgres },
  { name: 'SMTP down', run: smtpDown() },
  { name: 'poison job', run: poisonJob() },
  { name: 'duplicate trigger', run: duplicateTrigger() },
  { name: 'two coordinators', run: twoCoordinators },
  { name: 'definition changed mid-run', run: definitionChanged },
  { name: 'failpoint after handler', run: failpointAfterHandler() },
  { name: 'poison output', run: poisonOutput() },
  { name: 'hostile expressions', run: hostileExpressions() },
  { name: 'parked runs through a Redis wipe', run: parkedRunsRedisWipe() },
  { name: 'waiting kinds through a Redis wipe', run: waitingKindsRedisWipe() },
  { name: 'SIGSTOP coordinator', run: sigstopCoordinator() },
  { name: 'coordinator killed during a 1000-item forEach', run: killCoordinatorDuringForEach() },
  { name: 'coordinator killed while children run', run: killCoordinatorWhileChildrenRun() },
  // Real restarts and outages, on private servers the scenario starts (the machine's are shared).
  { name: 'Redis restart (private server)', run: onPrivateRedis(restartPrivateRedis('kill')) },
  { name: 'Redis FLUSHALL (private server)', run: onPrivateRedis(restartPrivateRedis('flushall')) },
  { name: 'PostgreSQL restart (private server)', run: onPrivatePostgres(restartPrivatePostgres('fast')) },
  { name: 'PostgreSQL crash (private server)', run: onPrivatePostgres(restartPrivatePostgres('immediate')) },
  { name: 'PostgreSQL down under load (private server)', run: onPrivatePostgres(postgresDownUnderLoad()) },
  { name: 'max_connections (private server)', run: onPrivatePostgres(maxConnections(), { maxConnections: 60 }) },
  { name: '200-step run with 1 MB outputs', run: onPrivateRedis(wideRun()) },
  {
    name: 'kill -9 one of two coordinators, sharded inbox, Redis Cluster',
    run: onRedisCluster(killOneOfTwoCoordinatorsSharded()),
  },
];
