'use strict';
/* global setInterval, clearInterval */
/**
 * The fan-out scenario (issue 14; `npm run bench -- --scenario fanout`): Baton alone, one run with a
 * forEach of N no-op items against N runs of one no-op step, on the same processes, interleaved, at
 * each list size (default 1 000 and 10 000). Per phase: items per second end to end (first start
 * request → the run's, or the last run's, `finished_at`), CPU ms per item of every process (the
 * coordinator's above all), the coordinator's RSS before, at its peak and after, and its inbox
 * batches. The question it answers: does an item's report cost the coordinator the same in a list of
 * 10 000 as in a list of 1 000, and as a run of its own? See docs/PERFORMANCE.md, *Fan-out*.
 */
const fs = require('node:fs');
const http = require('node:http');
const { performance } = require('node:perf_hooks');
const { setTimeout: sleep } = require('node:timers/promises');
const infra = require('./infra');
const { createSystem, metricValue, postJson, scrapeMetrics } = require('./systems');
const { median, round } = require('./stats');

const now = () => performance.timeOrigin + performance.now();
/** BENCH_FANOUT_SHAPES=forEach (or separate): one shape alone, for a CPU profile of just that shape. */
const SHAPES = (process.env.BENCH_FANOUT_SHAPES || 'separate,forEach').split(',').map((s) => s.trim());
for (const shape of SHAPES) if (!['separate', 'forEach'].includes(shape)) throw new Error(`unknown shape '${shape}'`);
/** How often the harness samples the coordinator's RSS during a phase (ms). */
const RSS_SAMPLE_MS = 100;
/**
 * BENCH_FANOUT_ITEM_BYTES=B: each list element an object padded to about B bytes instead of a number,
 * to see what the list's size (the run's input) costs. The items' inputs stay `{step: index}`.
 */
const ITEM_BYTES = Number(process.env.BENCH_FANOUT_ITEM_BYTES || 0);

/** Resident set size of a process now (VmRSS), in MB. */
function rssMb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Resets a process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0); false if not allowed. */
function resetPeakRss(pid) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** The coordinator's inbox batches so far, and its V8 heap in use now (MB), off its /metrics. */
async function coordinatorMetrics(system) {
  const text = await scrapeMetrics(system.coordinatorMetrics);
  return {
    batches: metricValue(text, 'baton_coordinator_batch_messages_count'),
    messages: metricValue(text, 'baton_coordinator_batch_messages_sum'),
    heapUsedMb: metricValue(text, 'nodejs_heap_size_used_bytes') / 2 ** 20,
  };
}

class FanoutScenario {
  /**
   * @param ctx    the harness context (id, serverUrl, redisUrl, concurrency)
   * @param env    the harness environment (redis, redisPid, pgStats)
   * @param opts   {sizes, reps, inFlight, log}
   */
  constructor(ctx, env, opts) {
    this.env = env;
    this.opts = opts;
    // A Baton of its own: its own database and Redis prefix, so the systems scenario's runs are not
    // in its tables and its RSS starts from a fresh process.
    this.system = createSystem('baton', { ...ctx, id: `${ctx.id}_fanout`, functionProcesses: 1 });
    this.system.workflows = ['bench-fanout', 'bench-one'];
    this.concurrency = 4 * ctx.concurrency;
    // A padded list can be over the gateway's default body limit (1 MB); the processes inherit this.
    if (ITEM_BYTES > 0) process.env.BATON_BODY_LIMIT = '100mb';
  }

  async setup() {
    await this.system.setup();
    this.poll = new infra.pg.Client({ connectionString: this.system.databaseUrl });
    await this.poll.connect();
    this.pollPid = (await this.poll.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  }

  async teardown() {
    await this.poll?.end().catch(() => undefined);
    await this.system.teardown();
  }

  pid(label) {
    return this.system.processes().find((p) => p.label === label)?.pid;
  }

  async snapshot() {
    const { rows } = await this.env.pgStats.query('SELECT pid FROM pg_stat_activity WHERE datname = $1', [
      this.system.database,
    ]);
    await this.env.pgStats.query('SELECT pg_stat_clear_snapshot()');
    const commits = await this.env.pgStats.query(
      'SELECT xact_commit::bigint AS n FROM pg_stat_database WHERE datname = $1',
      [this.system.database],
    );
    return {
      cpu: Object.fromEntries(this.system.processes().map((p) => [p.label, infra.cpuSeconds(p.pid)])),
      redisCpu: this.env.redisPid ? infra.cpuSeconds(this.env.redisPid) : 0,
      harnessCpu: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      // The harness's own polling connection is not the system's.
      pgCpu: new Map(rows.filter((r) => r.pid !== this.pollPid).map((r) => [r.pid, infra.cpuSeconds(r.pid)])),
      redis: await infra.commandStats(this.env.redis),
      commits: Number(commits.rows[0]?.n ?? 0),
      batches: await coordinatorMetrics(this.system),
    };
  }

  /** Starts the phase's work: one forEach run of `items` elements, or `items` runs of one step. */
  async trigger(shape, phase, items) {
    // Connections of its own for each phase: a keep-alive socket left idle between phases may have been
    // closed by the gateway (a request on it would hang up, and a start is not retried blindly).
    const agent = new http.Agent({ keepAlive: true, maxSockets: this.opts.inFlight });
    try {
      await this.start(agent, shape, phase, items);
    } finally {
      agent.destroy();
    }
  }

  async start(agent, shape, phase, items) {
    const { base } = this.system;
    if (shape === 'forEach') {
      const pad = 'x'.repeat(Math.max(0, ITEM_BYTES - 20));
      const list = Array.from({ length: items }, (_, i) => (ITEM_BYTES > 0 ? { i, pad } : i));
      const status = await postJson(agent, `${base}/v1/workflows/bench-fanout/runs`, { input: { phase, items: list } });
      if (status !== 202) throw new Error(`POST /v1/workflows/bench-fanout/runs: ${status}`);
      return;
    }
    let next = 0;
    const lane = async () => {
      while (next < items) {
        const key = `${phase}-${next++}`;
        const status = await postJson(agent, `${base}/v1/workflows/bench-one/runs`, { input: { key, phase } });
        if (status !== 202) throw new Error(`POST /v1/workflows/bench-one/runs: ${status}`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.opts.inFlight, items) }, lane));
  }

  /** The phase's runs: how many, how many ended, how many succeeded, and when the last one ended. */
  async progress(phase, since) {
    this.polls += 1;
    const { rows } = await this.poll.query(
      `SELECT count(*)::int AS runs,
              count(*) FILTER (WHERE status NOT IN ('pending', 'running', 'compensating'))::int AS ended,
              count(*) FILTER (WHERE status = 'succeeded')::int AS succeeded,
              max(finished_at) AS last
         FROM runs WHERE created_at >= $2 AND input->>'phase' = $1`,
      [phase, since],
    );
    return rows[0];
  }

  /** What the phase's items did: every item succeeded once, on its first attempt. */
  async check(shape, phase, since, items) {
    this.polls += 1;
    const { rows } = await this.poll.query(
      `SELECT count(*)::int AS executions,
              count(*) FILTER (WHERE e.status = 'succeeded')::int AS succeeded,
              count(*) FILTER (WHERE e.attempt > 1)::int AS retried,
              count(DISTINCT e.item_index)::int AS indexes,
              (array_agg(r.output))[1] AS output
         FROM runs r JOIN step_executions e
           ON e.run_id = r.id AND e.kind = 'action' AND e.superseded_at IS NULL
          AND (e.parent_execution_id IS NOT NULL) = $3
        WHERE r.created_at >= $2 AND r.input->>'phase' = $1`,
      [phase, since, shape === 'forEach'],
    );
    const c = rows[0];
    const problems = [];
    if (c.executions !== items) problems.push(`${c.executions} executions for ${items} items`);
    if (c.succeeded !== items) problems.push(`${c.succeeded} of ${items} items succeeded`);
    if (c.retried) problems.push(`${c.retried} items retried`);
    if (shape === 'forEach') {
      if (c.indexes !== items) problems.push(`${c.indexes} distinct item indexes for ${items} items`);
      if (c.output?.items !== items) problems.push(`run output ${JSON.stringify(c.output)}, not {items: ${items}}`);
    }
    return { retried: c.retried, problems };
  }

  async runPhase(shape, items, phase) {
    const coordinatorPid = this.pid('baton-coordinator');
    this.polls = 0;
    const since = (await this.poll.query('SELECT now() AS t')).rows[0].t;
    const rss = { before: rssMb(coordinatorPid), sampled: 0 };
    const hwmReset = resetPeakRss(coordinatorPid);
    const before = await this.snapshot();
    const pollsBefore = this.polls;
    const sampler = setInterval(() => {
      rss.sampled = Math.max(rss.sampled, rssMb(coordinatorPid));
    }, RSS_SAMPLE_MS);
    let state;
    let wallMs;
    const start = now();
    try {
      await this.trigger(shape, phase, items);
      const runs = shape === 'forEach' ? 1 : items;
      // Generous: a list the coordinator handles in O(items) per report is reported, not waited for.
      const deadline = Date.now() + 120_000 + items * 50;
      for (;;) {
        state = await this.progress(phase, since);
        if (state.runs === runs && state.ended === runs) break;
        this.system.assertAlive();
        if (Date.now() > deadline)
          throw new Error(`${phase}: ${state.ended}/${runs} runs ended after ${now() - start} ms`);
        await sleep(200);
      }
      wallMs = now() - start;
    } finally {
      clearInterval(sampler);
    }
    const after = await this.snapshot();
    const pollsDuring = this.polls - pollsBefore;
    const peak = Math.max(rss.sampled, hwmReset ? infra.peakRssMb(coordinatorPid) : 0);
    // RSS once the phase is over and the coordinator idle again.
    await sleep(2000);
    rss.after = rssMb(coordinatorPid);
    const heapAfter = (await coordinatorMetrics(this.system)).heapUsedMb;
    const { retried, problems } = await this.check(shape, phase, since, items);
    if (state.succeeded !== state.runs) {
      const { rows } = await this.poll.query(
        `SELECT status, error FROM runs WHERE created_at >= $2 AND input->>'phase' = $1 AND status <> 'succeeded' LIMIT 1`,
        [phase, since],
      );
      problems.push(
        `${state.runs - state.succeeded} runs did not succeed (one: ${rows[0]?.status} ${JSON.stringify(rows[0]?.error)})`,
      );
    }
    const elapsedMs = state.last ? state.last.getTime() - start : wallMs;
    const perItem = (seconds) => (1000 * seconds) / items;
    const cpuMsPerItem = {};
    for (const label of Object.keys(after.cpu)) cpuMsPerItem[label] = perItem(after.cpu[label] - before.cpu[label]);
    let pgCpu = 0;
    for (const pid of new Set([...before.pgCpu.keys(), ...after.pgCpu.keys()])) {
      pgCpu += (after.pgCpu.get(pid) ?? infra.cpuSeconds(pid)) - (before.pgCpu.get(pid) ?? 0);
    }
    cpuMsPerItem.postgres = perItem(pgCpu);
    cpuMsPerItem.redis = perItem(after.redisCpu - before.redisCpu);
    cpuMsPerItem['harness (client)'] = perItem(after.harnessCpu - before.harnessCpu);
    const redisCalls = Object.entries(after.redis).reduce(
      (sum, [cmd, n]) => (cmd === 'info' ? sum : sum + n - (before.redis[cmd] ?? 0)),
      0,
    );
    const batches = after.batches.batches - before.batches.batches;
    const messages = after.batches.messages - before.batches.messages;
    return {
      shape,
      items,
      phase,
      elapsedMs: round(elapsedMs, 0),
      itemsPerSec: round((1000 * items) / elapsedMs, 1),
      cpuMsPerItem: Object.fromEntries(Object.entries(cpuMsPerItem).map(([k, v]) => [k, round(v, 3)])),
      coordinatorRssMb: {
        before: round(rss.before, 1),
        peak: round(peak, 1),
        after: round(rss.after, 1),
        growth: round(peak - rss.before, 1),
      },
      // V8's heap in use (not RSS, which V8 gives back lazily): at the start, and 2 s after the end.
      coordinatorHeapUsedMb: { before: round(before.batches.heapUsedMb, 1), after: round(heapAfter, 1) },
      coordinatorBatches: batches,
      meanBatchMessages: batches ? round(messages / batches, 1) : null,
      inboxMessagesPerItem: round(messages / items, 2),
      redisCallsPerItem: round(redisCalls / items, 2),
      // The harness's own polls (one transaction each) are taken out, as in the systems scenario.
      pgCommitsPerItem: round(Math.max(0, after.commits - before.commits - pollsDuring) / items, 3),
      retried,
      complete: problems.length === 0,
      problems,
    };
  }

  /** Warm-up at the smallest size, then `reps` rounds of every size × both shapes, interleaved. */
  async run() {
    const { sizes, reps, log } = this.opts;
    const phases = [];
    const warm = Math.min(200, ...sizes);
    log(`fan-out: warm-up, ${warm} items each shape`);
    for (const shape of SHAPES) await this.runPhase(shape, warm, `fw-${shape}`);
    for (let rep = 1; rep <= reps; rep += 1) {
      for (const items of sizes) {
        // Which shape goes first alternates, so neither always meets the other's leftovers.
        const order = rep % 2 ? SHAPES : [...SHAPES].reverse();
        for (const shape of order) {
          const r = await this.runPhase(shape, items, `f${rep}-${shape}-${items}`);
          r.rep = rep;
          phases.push(r);
          log(
            `fan-out ${rep}/${reps} ${shape} x ${items}: ${r.itemsPerSec} items/s, coordinator ` +
              `${r.cpuMsPerItem['baton-coordinator']} ms CPU/item, RSS ${r.coordinatorRssMb.before} → ` +
              `${r.coordinatorRssMb.peak} → ${r.coordinatorRssMb.after} MB, heap ${r.coordinatorHeapUsedMb.before} → ` +
              `${r.coordinatorHeapUsedMb.after} MB` +
              (r.complete ? '' : `, PROBLEMS: ${r.problems.join('; ')}`),
          );
        }
      }
    }
    return summarize(phases, this.opts, this.concurrency);
  }
}

function summarize(phases, opts, concurrency) {
  const bySize = {};
  for (const items of opts.sizes) {
    const entry = {};
    for (const shape of SHAPES) {
      // Throughput and costs only from phases whose every item succeeded once.
      const all = phases.filter((p) => p.items === items && p.shape === shape);
      const ps = all.filter((p) => p.complete);
      const med = (pick, digits = 2) => round(median(ps.map(pick)), digits);
      const cpu = {};
      for (const label of Object.keys(ps[0]?.cpuMsPerItem ?? {})) cpu[label] = med((p) => p.cpuMsPerItem[label], 3);
      entry[shape] = {
        itemsPerSec: med((p) => p.itemsPerSec, 1),
        coordinatorCpuMsPerItem: cpu['baton-coordinator'],
        cpuMsPerItem: cpu,
        coordinatorRssMb: {
          before: med((p) => p.coordinatorRssMb.before, 1),
          peak: med((p) => p.coordinatorRssMb.peak, 1),
          after: med((p) => p.coordinatorRssMb.after, 1),
          growth: med((p) => p.coordinatorRssMb.growth, 1),
          maxPeak: round(Math.max(...ps.map((p) => p.coordinatorRssMb.peak)), 1),
        },
        coordinatorHeapUsedMb: {
          before: med((p) => p.coordinatorHeapUsedMb.before, 1),
          after: med((p) => p.coordinatorHeapUsedMb.after, 1),
        },
        meanBatchMessages: med((p) => p.meanBatchMessages, 1),
        inboxMessagesPerItem: med((p) => p.inboxMessagesPerItem),
        redisCallsPerItem: med((p) => p.redisCallsPerItem),
        pgCommitsPerItem: med((p) => p.pgCommitsPerItem, 3),
        complete: all.every((p) => p.complete),
        repetitions: { itemsPerSec: all.map((p) => (p.complete ? p.itemsPerSec : null)) },
      };
    }
    const ratio = (a, b) => (a && b ? round(a / b, 2) : null);
    entry.forEachVsSeparate = {
      itemsPerSec: ratio(entry.forEach?.itemsPerSec, entry.separate?.itemsPerSec),
      coordinatorCpuMsPerItem: ratio(entry.forEach?.coordinatorCpuMsPerItem, entry.separate?.coordinatorCpuMsPerItem),
      // Per repetition, each forEach against the separate runs of the same round.
      itemsPerSecByRep: [...new Set(phases.map((p) => p.rep))].map((rep) => {
        const of = (shape) =>
          phases.find((p) => p.rep === rep && p.items === items && p.shape === shape && p.complete)?.itemsPerSec;
        return ratio(of('forEach'), of('separate'));
      }),
    };
    bySize[items] = entry;
  }
  const small = Math.min(...opts.sizes);
  const large = Math.max(...opts.sizes);
  const growth = (shape, pick) => {
    if (!bySize[small][shape] || !bySize[large][shape]) return null;
    const a = pick(bySize[small][shape]);
    const b = pick(bySize[large][shape]);
    return a && b ? round(b / a, 2) : null;
  };
  const largeRatio = bySize[large].forEachVsSeparate.itemsPerSec;
  return {
    options: {
      sizes: opts.sizes,
      reps: opts.reps,
      functionConcurrency: concurrency,
      separateRunsInFlight: opts.inFlight,
      itemBytes: ITEM_BYTES || null,
      shapes: SHAPES,
      workflows: 'bench/workflows/bench-fanout.yaml (forEach, no concurrency cap) and bench-one.yaml (one step)',
    },
    bySize,
    // From the smallest list to the largest: 1.00 = an item costs the same whatever the list's length.
    growth: {
      from: small,
      to: large,
      forEachCoordinatorCpuMsPerItem: growth('forEach', (s) => s.coordinatorCpuMsPerItem),
      forEachItemsPerSec: growth('forEach', (s) => s.itemsPerSec),
      forEachCoordinatorPeakRssMb: growth('forEach', (s) => s.coordinatorRssMb.peak),
      forEachCoordinatorRssGrowthMb: growth('forEach', (s) => s.coordinatorRssMb.growth),
      separateCoordinatorCpuMsPerItem: growth('separate', (s) => s.coordinatorCpuMsPerItem),
    },
    target: {
      target: `forEach of ${large} items within 2x of ${large} separate runs (items/s ratio >= 0.5)`,
      value: largeRatio,
      met: largeRatio !== null && largeRatio >= 0.5 && Boolean(bySize[large].forEach?.complete),
    },
    complete: phases.every((p) => p.complete),
    phases,
  };
}

/** Runs the fan-out scenario from start to teardown; returns its section of the report. */
async function runFanoutScenario(ctx, env, opts) {
  const scenario = new FanoutScenario(ctx, env, opts);
  opts.log('fan-out: starting Baton (its own database and prefix)');
  // Listed with the harness's systems, so that Ctrl-C during the scenario stops it and drops its database.
  env.systems.push(scenario.system);
  try {
    await scenario.setup();
    return await scenario.run();
  } finally {
    env.systems.splice(env.systems.indexOf(scenario.system), 1);
    await scenario.teardown().catch((err) => opts.log(`fan-out teardown: ${err.message}`));
  }
}

/** The stdout table of the scenario. */
function printFanout(section) {
  const out = [
    'fan-out: one forEach of N items vs N runs of one step (medians; CPU ms per item; coordinator RSS MB before/peak/after)',
  ];
  for (const [items, e] of Object.entries(section.bySize)) {
    for (const shape of SHAPES) {
      const s = e[shape];
      out.push(
        `  ${String(items).padStart(6)} ${shape.padEnd(8)}  ${String(s.itemsPerSec).padStart(7)} items/s  coordinator ` +
          `${s.coordinatorCpuMsPerItem} ms/item  RSS ${s.coordinatorRssMb.before}/${s.coordinatorRssMb.peak}/` +
          `${s.coordinatorRssMb.after}  batch ${s.meanBatchMessages} msgs${s.complete ? '' : '  INCOMPLETE'}`,
      );
    }
    out.push(
      `  ${String(items).padStart(6)} forEach/separate: items/s ${e.forEachVsSeparate.itemsPerSec}x, coordinator CPU/item ${e.forEachVsSeparate.coordinatorCpuMsPerItem}x`,
    );
  }
  const g = section.growth;
  out.push(
    `  ${g.from} -> ${g.to} items: forEach coordinator CPU/item ${g.forEachCoordinatorCpuMsPerItem}x, peak RSS ${g.forEachCoordinatorPeakRssMb}x`,
    `  target: ${section.target.target}: ${section.target.value} (${section.target.met ? 'met' : 'not met'})`,
  );
  process.stdout.write(`${out.join('\n')}\n`);
}

module.exports = { runFanoutScenario, printFanout };
