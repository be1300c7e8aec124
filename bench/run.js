#!/usr/bin/env node
'use strict';
/**
 * `npm run bench`: Baton against raw BullMQ (chain, chain on an AOF Redis, FlowProducer), pg-boss,
 * graphile-worker and the durable-execution engines DBOS (in-process and through its queue) and
 * Restate on this machine, in one process run, interleaved (A B A B ...), median of repetitions,
 * after a warm-up. A system that cannot start is reported as skipped, with the reason. See
 * docs/PERFORMANCE.md for what is measured and how to read it.
 *
 *   node bench/run.js [--runs N] [--quick] [--reps R] [--systems a,b] [--rate R] [--common-rate R]
 *                     [--latency-runs N] [--concurrency C] [--function-processes N] [--out file.json]
 *                     [--redis-url URL] [--scenario systems|fanout|all|function] [--fanout-items 1000,10000]
 *                     [--topology single|cluster]
 *
 * `--topology cluster` measures Baton on a 3-master Redis Cluster it starts (`baton-cluster`: 16 inbox
 * shards, BENCH_CLUSTER_SHARDS) next to Baton on one Redis (`baton`), in the same run; the other
 * systems are left out unless --systems names them.
 *
 * `--scenario fanout` (or BENCH_SCENARIO=fanout) runs only the fan-out scenario of issue 14 (Baton: one
 * forEach of N items against N runs of one step, bench/lib/fanout.js) and writes its `fanout` section
 * into the --out file, keeping the rest of that file; `all` runs the systems, then the fan-out.
 * `--scenario function` measures one function process compiled, bundled, and as its image starts it
 * (ready time, idle RSS, jobs/s, RSS after the jobs) and writes the `functionFootprint` section.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const { setTimeout: sleep } = require('node:timers/promises');
const infra = require('./lib/infra');
const { SYSTEMS, createSystem } = require('./lib/systems');
const { percentile, median, round, checkRuns } = require('./lib/stats');
const { issue16Targets } = require('./lib/targets');
const { printTable, writeSvg } = require('./lib/report');
const { diffHops, summarizeHops, HOPS } = require('./lib/hops');
const { runFanoutScenario, printFanout } = require('./lib/fanout');
const { runFunctionScenario, printFunctionFootprint } = require('./lib/function-footprint');

const now = () => performance.timeOrigin + performance.now();
/** Triggers in flight at once during a burst (each system's client gets the same). */
const BURST_IN_FLIGHT = 64;
/** Open-loop latency points, as fractions of each system's own burst capacity. */
const LATENCY_LOADS = [0.1, 0.5, 0.8];
/** Open-loop latency point at one rate common to every system (runs/s), so they also meet the same load. */
const COMMON_RATE = 150;
/**
 * What `--scenario` selects: the systems comparison, the fan-out scenario (issue 14), both, or the
 * function process footprint (issue 15: bench/lib/function-footprint.js).
 */
const SCENARIOS = ['systems', 'fanout', 'all', 'function'];
/** The fan-out scenario's list sizes (items per forEach, and runs of one step to compare with). */
const FANOUT_ITEMS = [1000, 10000];

function parseArgs(argv) {
  const opts = {
    runs: 2000,
    reps: 3,
    // baton-cluster only with --topology cluster (or named in --systems): it starts a cluster of its own.
    systems: SYSTEMS.filter((s) => s !== 'baton-cluster'),
    rate: undefined,
    commonRate: COMMON_RATE,
    latencyRuns: undefined,
    concurrency: 8,
    out: path.join(__dirname, 'results', 'latest.json'),
    redisUrl: process.env.BENCH_REDIS_URL,
    serverUrl:
      process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    quick: false,
    scenario: process.env.BENCH_SCENARIO || 'systems',
    fanoutItems: process.env.BENCH_FANOUT_ITEMS ? parseSizes(process.env.BENCH_FANOUT_ITEMS) : FANOUT_ITEMS,
  };
  const given = new Set();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    const int = () => {
      const n = Number(value());
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${arg} must be a positive number`);
      return n;
    };
    given.add(arg);
    if (arg === '--runs') opts.runs = Math.round(int());
    else if (arg === '--reps') opts.reps = Math.round(int());
    else if (arg === '--rate') opts.rate = int();
    else if (arg === '--common-rate') opts.commonRate = int();
    else if (arg === '--latency-runs') opts.latencyRuns = Math.round(int());
    else if (arg === '--concurrency') opts.concurrency = Math.round(int());
    else if (arg === '--function-processes') opts.functionProcesses = Math.round(int());
    else if (arg === '--out') opts.out = path.resolve(value());
    else if (arg === '--redis-url') opts.redisUrl = value();
    else if (arg === '--quick') opts.quick = true;
    else if (arg === '--topology') {
      const topology = value();
      if (!['single', 'cluster'].includes(topology))
        throw new Error(`--topology is single or cluster, not '${topology}'`);
      opts.topology = topology;
    } else if (arg === '--scenario') opts.scenario = value();
    else if (arg === '--fanout-items') opts.fanoutItems = parseSizes(value());
    else if (arg === '--systems') {
      opts.systems = value()
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const s of opts.systems)
        if (!SYSTEMS.includes(s)) throw new Error(`unknown system '${s}' (known: ${SYSTEMS.join(', ')})`);
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(fs.readFileSync(path.join(__dirname, 'run.js'), 'utf8').split('*/')[0] + '*/\n');
      process.exit(0);
    } else throw new Error(`unknown option ${arg}`);
  }
  if (opts.topology === 'cluster' && !given.has('--systems')) opts.systems = ['baton', 'baton-cluster'];
  if (!SCENARIOS.includes(opts.scenario))
    throw new Error(`unknown scenario '${opts.scenario}' (known: ${SCENARIOS.join(', ')})`);
  if (opts.quick) {
    if (!given.has('--fanout-items') && !process.env.BENCH_FANOUT_ITEMS) opts.fanoutItems = [200, 2000];
    if (!given.has('--runs')) opts.runs = 100;
    if (!given.has('--reps')) opts.reps = 2;
    // A quick look must not replace the committed measurement.
    if (!given.has('--out')) opts.out = path.join(__dirname, 'results', 'quick.json.tmp');
  }
  opts.warmupRuns = Math.max(10, Math.round(opts.runs / 10));
  return opts;
}

function parseSizes(text) {
  const sizes = text.split(',').map((s) => Number(s.trim()));
  if (!sizes.length || sizes.some((n) => !Number.isInteger(n) || n <= 0))
    throw new Error(`--fanout-items takes positive integers separated by commas, not '${text}'`);
  return [...new Set(sizes)].sort((a, b) => a - b);
}

function log(message) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---- one measured phase ------------------------------------------------------------------------

async function resourceSnapshot(system, env) {
  const pids = system.processes();
  // bullmq-chain-aof runs on a Redis of its own.
  const redis = system.statsRedis ?? env.redis;
  const redisPid = system.redisPid ?? env.redisPid;
  let pgPids = [];
  if (system.database) {
    const { rows } = await env.pgStats.query('SELECT pid FROM pg_stat_activity WHERE datname = $1', [system.database]);
    pgPids = rows.map((r) => r.pid);
  }
  return {
    redis: await infra.commandStats(redis),
    cpu: Object.fromEntries(pids.map((p) => [p.label, infra.cpuSeconds(p.pid)])),
    redisCpu: redisPid ? infra.cpuSeconds(redisPid) : 0,
    harnessCpu: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    pgCpu: new Map(pgPids.map((pid) => [pid, infra.cpuSeconds(pid)])),
  };
}

async function pgCommits(env, database) {
  await env.pgStats.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await env.pgStats.query('SELECT xact_commit::bigint AS n FROM pg_stat_database WHERE datname = $1', [
    database,
  ]);
  return Number(rows[0]?.n ?? 0);
}

async function triggerAll(system, runs, rate) {
  const start = now();
  if (!rate) {
    let next = 0;
    const lane = async () => {
      while (next < runs.length) {
        const run = runs[next++];
        run.sentAt = now();
        await system.trigger(run);
      }
    };
    await Promise.all(Array.from({ length: Math.min(BURST_IN_FLIGHT, runs.length) }, lane));
    return start;
  }
  // Open loop: run i is sent at start + i / rate whatever happened to the ones before.
  const sent = [];
  for (let i = 0; i < runs.length; i += 1) {
    const due = start + (i * 1000) / rate;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    runs[i].sentAt = now();
    sent.push(system.trigger(runs[i]));
  }
  await Promise.all(sent);
  return start;
}

async function runPhase(system, env, { phase, count, rate }) {
  const runs = Array.from({ length: count }, (_, i) => ({ key: `${phase}-${i}`, phase, sentAt: 0 }));
  const before = await resourceSnapshot(system, env);
  const commitsBefore = system.database ? await pgCommits(env, system.database) : 0;
  system.harnessCommits = 0;
  system.beforePhase?.();
  // Baton: its hop histograms, read before and after (the difference is this phase's).
  const hopsBefore = system.hopSnapshot ? await system.hopSnapshot() : undefined;
  const start = await triggerAll(system, runs, rate);
  // Generous: a system this slow is reported with what it lost rather than waited for.
  const deadline = Date.now() + 60_000 + count * 100;
  let finished = 0;
  while (Date.now() < deadline) {
    finished = await system.finished(phase);
    if (finished >= count) break;
    // Completion is read from each system's store; the figures come from the step timestamps, so a
    // slower poll changes no measurement, only how much the poll itself costs the machine.
    await sleep(200);
  }
  const wallMs = now() - start;
  const after = await resourceSnapshot(system, env);
  const harnessCommits = system.harnessCommits;
  // PostgreSQL publishes a backend's counters at most once a second: let them settle.
  await sleep(1500);
  const commitsAfter = system.database ? await pgCommits(env, system.database) : 0;
  const byKey = await system.collect(phase);
  const hopsAfter = hopsBefore ? await system.hopSnapshot() : undefined;
  const check = checkRuns(runs, byKey);
  const elapsedMs = check.complete ? check.lastStep - start : wallMs;
  const steps = count * 4;
  const redisCalls = Object.entries(after.redis).reduce(
    (sum, [cmd, n]) => (cmd === 'info' ? sum : sum + n - (before.redis[cmd] ?? 0)),
    0,
  );
  const scriptCalls = ['evalsha', 'eval', 'fcall'].reduce(
    (sum, cmd) => sum + (after.redis[cmd] ?? 0) - (before.redis[cmd] ?? 0),
    0,
  );
  const cpuPct = {};
  for (const label of Object.keys(after.cpu)) {
    cpuPct[label] = (100 * (after.cpu[label] - (before.cpu[label] ?? 0))) / (wallMs / 1000);
  }
  cpuPct['harness (client)'] = (100 * (after.harnessCpu - before.harnessCpu)) / (wallMs / 1000);
  cpuPct.redis = (100 * (after.redisCpu - before.redisCpu)) / (wallMs / 1000);
  let pgCpu = 0;
  for (const pid of new Set([...before.pgCpu.keys(), ...after.pgCpu.keys()])) {
    pgCpu += (after.pgCpu.get(pid) ?? infra.cpuSeconds(pid)) - (before.pgCpu.get(pid) ?? 0);
  }
  cpuPct.postgres = (100 * pgCpu) / (wallMs / 1000);
  return {
    count,
    rate,
    finished,
    elapsedMs,
    stepsPerSec: (check.complete * 4 * 1000) / elapsedMs,
    workflowsPerSec: (check.complete * 1000) / elapsedMs,
    triggerLatencyMs: { p50: percentile(check.triggerLatency, 50), p99: percentile(check.triggerLatency, 99) },
    stepLatencyMs: {
      p50: percentile(check.stepLatency, 50),
      p99: percentile(check.stepLatency, 99),
      mean: check.stepLatency.length ? check.stepLatency.reduce((a, b) => a + b, 0) / check.stepLatency.length : null,
    },
    ...(hopsAfter ? { hopsMs: summarizeHops(diffHops(hopsBefore, hopsAfter)) } : {}),
    redisCallsPerStep: redisCalls / steps,
    redisScriptCallsPerStep: scriptCalls / steps,
    pgCommitsPerStep: Math.max(0, commitsAfter - commitsBefore - harnessCommits) / steps,
    cpuPct,
    complete: check.complete,
    problems: check.problems,
  };
}

// ---- the whole run -----------------------------------------------------------------------------

/** The Baton build measured: the commit of the checkout the bench runs in, and whether it is modified. */
function batonBuild() {
  const git = (args) => execFileSync('git', args, { cwd: path.resolve(__dirname, '..'), encoding: 'utf8' }).trim();
  try {
    const dirty = git([
      'status',
      '--porcelain',
      '--untracked-files=no',
      '--',
      'workflow',
      'engine',
      'services',
      'functions',
    ]);
    return { commit: git(['rev-parse', 'HEAD']), modified: dirty.length > 0 };
  } catch {
    return { commit: 'unknown', modified: true };
  }
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    hostname: os.hostname(),
    loadAverageAtStart: os.loadavg().map((l) => round(l, 2)),
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const id = crypto.randomBytes(3).toString('hex');
  const env = { systems: [] };
  const started = new Date();
  // The build measured is the one the processes start from: read it now, not when the report is written.
  const build = batonBuild();
  const onSignal = () => {
    log('interrupted: cleaning up');
    cleanup(env).finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    if (opts.redisUrl) {
      log(`using Redis ${opts.redisUrl} (INFO commandstats counts everything else that uses it too)`);
      env.redisUrl = opts.redisUrl;
    } else {
      const redis = await infra.startRedis();
      env.redisServer = redis;
      env.redisUrl = redis.url;
      env.redisPid = redis.pid;
      log(`started redis-server (no persistence) at ${redis.url}`);
    }
    env.redis = new infra.Redis(env.redisUrl);
    env.pgStats = new infra.pg.Client({ connectionString: infra.withDatabase(opts.serverUrl, 'postgres') });
    await env.pgStats.connect();

    const ctx = {
      id,
      serverUrl: opts.serverUrl,
      redisUrl: env.redisUrl,
      concurrency: opts.concurrency,
      functionProcesses: opts.functionProcesses,
    };
    const fanoutOpts = { sizes: opts.fanoutItems, reps: opts.reps, inFlight: BURST_IN_FLIGHT, log };
    const fanoutSection = async () => ({
      date: new Date().toISOString(),
      baton: build,
      machine: { ...machine(), ...(process.env.BENCH_NOTE ? { note: process.env.BENCH_NOTE } : {}) },
      postgres: await postgresSettings(env),
      ...(await runFanoutScenario(ctx, env, fanoutOpts)),
    });
    if (opts.scenario === 'function') {
      const section = {
        date: new Date().toISOString(),
        baton: build,
        machine: { ...machine(), ...(process.env.BENCH_NOTE ? { note: process.env.BENCH_NOTE } : {}) },
        ...(await runFunctionScenario({ redisUrl: env.redisUrl, reps: opts.reps, log })),
      };
      let report = {};
      try {
        report = JSON.parse(fs.readFileSync(opts.out, 'utf8'));
      } catch {
        report = {};
      }
      report.functionFootprint = section;
      fs.mkdirSync(path.dirname(opts.out), { recursive: true });
      fs.writeFileSync(opts.out, `${JSON.stringify(report, null, 2)}\n`);
      printFunctionFootprint(section);
      log(`wrote the functionFootprint section of ${path.relative(process.cwd(), opts.out)}`);
      return;
    }
    if (opts.scenario === 'fanout') {
      const fanout = await fanoutSection();
      // The file keeps what it had (the systems scenario's last run): only its fan-out section is replaced.
      let report = {};
      try {
        report = JSON.parse(fs.readFileSync(opts.out, 'utf8'));
      } catch {
        report = {};
      }
      report.fanout = fanout;
      fs.mkdirSync(path.dirname(opts.out), { recursive: true });
      fs.writeFileSync(opts.out, `${JSON.stringify(report, null, 2)}\n`);
      printFanout(fanout);
      log(`wrote the fan-out section of ${path.relative(process.cwd(), opts.out)}`);
      return;
    }
    // A system that cannot start (a binary that does not run here, a server that does not come up)
    // is reported as skipped with the reason; the run goes on with the others.
    const skipped = [];
    for (const name of opts.systems) {
      log(`starting ${name}`);
      const system = createSystem(name, ctx);
      const t = Date.now();
      try {
        await system.setup();
        env.systems.push(system);
        log(`started ${name} (${Date.now() - t} ms)`);
      } catch (err) {
        const reason = String(err.message ?? err)
          .split('\n')
          .slice(0, 12)
          .join('\n');
        log(`skipping ${name}: it did not start: ${reason}`);
        skipped.push({ name, reason });
        await system.teardown().catch((e) => log(`teardown of ${name}: ${e.message}`));
      }
    }
    const systems = env.systems;
    const results = new Map(systems.map((system) => [system.name, { bursts: [], latency: [], warmup: [] }]));

    // A system that breaks is reported with its error and left out of the phases after it.
    const measure = async (system, list, phase) => {
      if (system.failed) return undefined;
      try {
        const r = await runPhase(system, env, phase);
        list.push(r);
        return r;
      } catch (err) {
        system.failed = String(err.message ?? err)
          .split('\n')
          .slice(0, 12)
          .join('\n');
        log(`${system.name} failed in phase ${phase.phase}: ${system.failed}`);
        return undefined;
      }
    };
    log(`warm-up: ${opts.warmupRuns} runs each`);
    for (const system of systems) {
      await measure(system, results.get(system.name).warmup, { phase: `w-${system.name}`, count: opts.warmupRuns });
    }
    for (let rep = 1; rep <= opts.reps; rep += 1) {
      for (const system of systems) {
        const r = await measure(system, results.get(system.name).bursts, { phase: `b${rep}`, count: opts.runs });
        if (r) {
          log(
            `burst ${rep}/${opts.reps} ${system.name}: ${round(r.stepsPerSec, 0)} steps/s, ${r.complete}/${r.count} runs in order`,
          );
        }
      }
    }
    // Latency is measured open loop at 10%, 50% and 80% of each system's own burst capacity (or at
    // the one --rate given); the 50% point is the headline figure.
    const capacities = new Map(
      systems.map((system) => [
        system.name,
        median(results.get(system.name).bursts.map((r) => r.workflowsPerSec)) ?? 1,
      ]),
    );
    // Then one point at a rate common to every system (`--common-rate`), unless --rate already is one.
    const loads = opts.rate ? [undefined] : [...LATENCY_LOADS, 'common'];
    const rateAt = (system, load) => {
      if (load === undefined) return opts.rate;
      if (load === 'common') return opts.commonRate;
      return Math.max(1, round(capacities.get(system.name) * load, 1));
    };
    const keyOf = (load) => {
      if (load === undefined) return 'given';
      if (load === 'common') return 'common';
      return `${Math.round(load * 100)}%`;
    };
    for (let rep = 1; rep <= opts.reps; rep += 1) {
      for (const load of loads) {
        for (const system of systems) {
          const rate = rateAt(system, load);
          const count = opts.latencyRuns ?? Math.min(opts.runs, Math.max(20, Math.round(rate * 6)));
          const key = keyOf(load);
          const r = await measure(system, results.get(system.name).latency, {
            phase: `l${rep}-${key.replace('%', '')}`,
            count,
            rate,
          });
          if (r) {
            r.load = key;
            r.rate = rate;
            const { p50, p99 } = r.stepLatencyMs;
            log(
              `latency ${rep}/${opts.reps} ${system.name} at ${key} (${rate}/s): step p50 ${round(p50, 1)} ms, p99 ${round(p99, 1)} ms`,
            );
          }
        }
      }
    }
    const rates = new Map(
      systems.map((system) => [system.name, rateAt(system, loads.includes(0.5) ? 0.5 : undefined)]),
    );

    const report = {
      machine: {
        ...machine(),
        ...(process.env.BENCH_NOTE ? { note: process.env.BENCH_NOTE } : {}),
      },
      date: started.toISOString(),
      baton: build,
      options: {
        runs: opts.runs,
        reps: opts.reps,
        warmupRuns: opts.warmupRuns,
        rate: opts.rate ?? '10%, 50% (headline) and 80% of each system’s own burst capacity',
        commonRate: opts.rate ? null : opts.commonRate,
        postgres: await postgresSettings(env),
        concurrencyPerQueue: opts.concurrency,
        burstInFlight: BURST_IN_FLIGHT,
        redis: opts.redisUrl ? 'given' : 'private redis-server, no persistence',
      },
      systems: await Promise.all(
        systems.map((system) =>
          summarize(system, results.get(system.name), rates.get(system.name), capacities.get(system.name)),
        ),
      ),
      skipped,
    };
    const chain = report.systems.find((s) => s.name === 'bullmq-chain');
    if (chain?.stepsPerSec) {
      for (const s of report.systems) s.vsBullmqChain = { stepsPerSec: round(s.stepsPerSec / chain.stepsPerSec, 2) };
    }
    const baton = report.systems.find((s) => s.name === 'baton');
    if (baton?.stepsPerSec) {
      for (const s of report.systems) {
        s.vsBaton = { stepsPerSec: s.stepsPerSec === null ? null : round(s.stepsPerSec / baton.stepsPerSec, 2) };
      }
    }
    report.targets = issue16Targets(report);
    if (opts.scenario === 'all') {
      // The systems stop first: their idle processes (pollers among them) must not share the machine.
      for (const system of [...env.systems]) {
        await system.teardown().catch((err) => log(`teardown of ${system.name}: ${err.message}`));
        env.systems.splice(env.systems.indexOf(system), 1);
      }
      report.fanout = await fanoutSection();
      try {
        const previous = JSON.parse(fs.readFileSync(opts.out, 'utf8'));
        if (previous.functionFootprint) report.functionFootprint = previous.functionFootprint;
      } catch {
        // No file yet, or not JSON: nothing to keep.
      }
    } else {
      // The sections measured before (each has its own date and build) stay in the file.
      try {
        const previous = JSON.parse(fs.readFileSync(opts.out, 'utf8'));
        if (previous.fanout) report.fanout = previous.fanout;
        if (previous.functionFootprint) report.functionFootprint = previous.functionFootprint;
      } catch {
        // No file yet, or not JSON: nothing to keep.
      }
    }
    fs.mkdirSync(path.dirname(opts.out), { recursive: true });
    fs.writeFileSync(opts.out, `${JSON.stringify(report, null, 2)}\n`);
    const svg = opts.out.replace(/\.json(\.tmp)?$/, '.svg$1');
    writeSvg(report, svg === opts.out ? `${opts.out}.svg` : svg);
    printTable(report);
    if (opts.scenario === 'all') printFanout(report.fanout);
    log(`wrote ${path.relative(process.cwd(), opts.out)}`);
  } catch (err) {
    // Said before cleaning up, which may itself run into the same trouble.
    log(`failed: ${err.stack ?? err}`);
    process.exitCode = 1;
  } finally {
    await cleanup(env);
  }
}

async function summarize(system, result, rate, capacity) {
  const all = [...result.warmup, ...result.bursts, ...result.latency];
  const problems = { lost: 0, duplicated: 0, reordered: 0, retried: 0 };
  for (const r of all) for (const k of Object.keys(problems)) problems[k] += r.problems[k];
  const triggered = all.reduce((n, r) => n + r.count, 0);
  const inOrder = all.reduce((n, r) => n + r.complete, 0);
  const valid = inOrder === triggered && !system.failed;
  const med = (pick, digits = 2) => round(median(result.bursts.map(pick)), digits);
  // The headline latency is the 50% point (or the --rate given); every point is in latencyByLoad.
  const headline = result.latency.filter((r) => r.load === '50%' || r.load === 'given');
  const lat = (pick) => round(median(headline.map(pick)), 2);
  const latencyByLoad = {};
  for (const key of [...new Set(result.latency.map((r) => r.load))]) {
    const points = result.latency.filter((r) => r.load === key);
    const m = (pick) => round(median(points.map(pick)), 2);
    latencyByLoad[key] = {
      rate: points[0].rate,
      stepLatencyMs: {
        p50: m((r) => r.stepLatencyMs.p50),
        p99: m((r) => r.stepLatencyMs.p99),
        mean: m((r) => r.stepLatencyMs.mean),
      },
      triggerLatencyMs: { p50: m((r) => r.triggerLatencyMs.p50), p99: m((r) => r.triggerLatencyMs.p99) },
    };
    // Baton's hops (bench/lib/hops.js): each figure the median over the repetitions.
    if (points.some((r) => r.hopsMs)) {
      latencyByLoad[key].hopsMs = {};
      for (const hop of HOPS) {
        const of = points.map((r) => r.hopsMs?.[hop]).filter(Boolean);
        if (!of.length) continue;
        const h = (pick) => round(median(of.map(pick)), 3);
        latencyByLoad[key].hopsMs[hop] = { mean: h((x) => x.mean), p50: h((x) => x.p50), p99: h((x) => x.p99) };
      }
    }
  }
  const cpu = {};
  for (const label of Object.keys(result.bursts[0]?.cpuPct ?? {}))
    cpu[label] = round(median(result.bursts.map((r) => r.cpuPct[label])), 0);
  const common = latencyByLoad.common;
  const rssByProcessMb = Object.fromEntries(system.processes().map((p) => [p.label, round(infra.peakRssMb(p.pid), 1)]));
  return {
    name: system.name,
    runs: result.bursts[0]?.count ?? 0,
    stepsPerSec: valid ? med((r) => r.stepsPerSec, 0) : null,
    workflowsPerSec: valid ? med((r) => r.workflowsPerSec, 1) : null,
    stepLatencyMs: {
      p50: lat((r) => r.stepLatencyMs.p50),
      p99: lat((r) => r.stepLatencyMs.p99),
      mean: lat((r) => r.stepLatencyMs.mean),
    },
    triggerLatencyMs: { p50: lat((r) => r.triggerLatencyMs.p50), p99: lat((r) => r.triggerLatencyMs.p99) },
    rssMb: round(
      Object.values(rssByProcessMb).reduce((a, b) => a + b, 0),
      1,
    ),
    redisCallsPerStep: med((r) => r.redisCallsPerStep),
    pgCommitsPerStep: med((r) => r.pgCommitsPerStep),
    redisScriptCallsPerStep: med((r) => r.redisScriptCallsPerStep),
    latencyRate: rate,
    latencyByLoad,
    // The same open-loop rate for every system; above a system's own capacity its runs queue up.
    commonRate: common
      ? {
          rate: common.rate,
          stepLatencyMs: common.stepLatencyMs,
          triggerLatencyMs: common.triggerLatencyMs,
          aboveCapacity: capacity !== null && capacity !== undefined && common.rate > capacity,
        }
      : null,
    durability: system.durability,
    durable: system.durable,
    valid,
    runsTriggered: triggered,
    runsInOrder: inOrder,
    problems,
    ...(system.failed ? { error: system.failed } : {}),
    cpuPctDuringBurst: cpu,
    rssByProcessMb,
    tuning: system.tuning,
    ...(system.extraStats ? await system.extraStats().catch(() => ({})) : {}),
    repetitions: {
      stepsPerSec: result.bursts.map((r) => round(r.stepsPerSec, 0)),
      stepLatencyP50Ms: headline.map((r) => round(r.stepLatencyMs.p50, 2)),
    },
  };
}

/** The server settings that decide PostgreSQL's durability, as the systems found them. */
async function postgresSettings(env) {
  const { rows } = await env.pgStats.query(
    `SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync', 'server_version')`,
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
}

async function cleanup(env) {
  if (env.cleaning) return env.cleaning;
  env.cleaning = (async () => {
    for (const system of env.systems) {
      const t = Date.now();
      await system.teardown().catch((err) => log(`teardown of ${system.name}: ${err.message}`));
      log(`stopped ${system.name} (${Date.now() - t} ms)`);
    }
    await infra.stopAllProcesses();
    await env.redis?.quit().catch(() => undefined);
    await env.pgStats?.end().catch(() => undefined);
    if (env.redisServer) await infra.stopProcess(env.redisServer.entry);
  })();
  return env.cleaning;
}

// A client library's pool losing its connection while databases are dropped must not end the run.
process.on('uncaughtException', (err) => log(`uncaught: ${err.message}`));
main().then(
  // Client libraries (pg-boss, graphile-worker) may leave timers behind: everything is stopped now.
  () => process.exit(process.exitCode ?? 0),
  (err) => {
    log(`failed: ${err.stack ?? err}`);
    process.exit(1);
  },
);
