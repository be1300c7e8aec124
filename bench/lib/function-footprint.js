'use strict';
/* global fetch */
/**
 * The function scenario (issue 15; `npm run bench -- --scenario function`): one function process —
 * `transform`, the reference function with no dependencies of its own — started several ways, in
 * turns (A B C A B C …), each turn a fresh process:
 *   compiled      `node dist/main.js`, the tsc output with its node_modules (before the bundle);
 *   bundle        `node main.js`, one esbuild file (the SDK's bundleFunction, sdk/src/bundle.ts);
 *   no-flags      `node start.js` with a code cache written without flags: the start script as a
 *                 CPU-bound function would run it without the images' V8 flags (NO_FLAGS);
 *   image         the bundle as the function images start it (Dockerfile, target `function`):
 *                 `node [IMAGE_NODE_FLAGS] start.js`, the SDK's start script, with the V8 code cache
 *                 written first by `start.js --write-code-cache` as the image build does.
 * With BENCH_FUNCTION_BEFORE=<bundle file> (a bundle of an earlier commit, made by its own
 * sdk/src/bundle.ts) another variant, `before`, runs that file as the images started it then
 * (BENCH_FUNCTION_BEFORE_FLAGS, default the current image flags): a change to the bundle or the
 * flags is measured against what it replaces in the same run.
 * With BENCH_FUNCTION_TRY_FLAGS="<flags>;<flags>…" each flag set is one more variant, `flags:<flags>`:
 * start.js with a code cache written under those flags, as the image would run if its CMD had them.
 * Per turn: start to ready (spawn → the first 200 on /healthz; also the process's CPU ms by then,
 * which the machine's other load inflates less than the wall clock), idle RSS 3 s after ready, then
 * JOBS jobs enqueued at once as the coordinator enqueues them: jobs/s until the last report is on the
 * inbox, CPU ms per job, RSS after them and the peak, and RSS at rest, REST_MS after the last job.
 * Medians per variant, ratios against `compiled`.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const { performance } = require('node:perf_hooks');
const { setTimeout: sleep } = require('node:timers/promises');
const { Queue } = require('bullmq');
const infra = require('./infra');
const { median, round } = require('./stats');

const ROOT = path.resolve(__dirname, '../..');
const FUNCTION = 'transform';
const JOBS = Number(process.env.BENCH_FUNCTION_JOBS || 1000);
const IDLE_MS = 3_000;
const now = () => performance.timeOrigin + performance.now();
const CLK_TCK = 100;
/** The node flags of a function image (Dockerfile's `function` stage; docs/PERFORMANCE.md says why). */
const { IMAGE_NODE_FLAGS, bundleFunction, writeCodeCache } = require('@baton/sdk/dist/bundle');
/**
 * The `no-flags` variant: start.js and its cache with node's defaults, what a CPU-bound function gets
 * when it starts itself without the images' flags (docs/PERFORMANCE.md, "Function images").
 */
const NO_FLAGS = [];
/**
 * How long after its last job a process is measured again, at rest: V8's memory reducer shrinks an
 * idle heap some 10-20 s after allocation stops (seen here), so the RSS right after the jobs is not
 * what a pod keeps.
 */
const REST_MS = Number(process.env.BENCH_FUNCTION_REST_MS || 30_000);

function procStat(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK };
}
function memory(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)[1]);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

async function waitFor(probe, timeoutMs, what, everyMs = 5) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The job data the coordinator writes for a step (@baton/sdk's StepJobData, protocol version 1). */
function jobData(i) {
  const runId = crypto.randomUUID();
  return {
    v: 1,
    runId,
    stepExecutionId: crypto.randomUUID(),
    stepId: 'sum',
    workflow: 'bench-function',
    kind: 'action',
    function: FUNCTION,
    input: {
      expression: '$sum(items.(price * quantity))',
      data: { items: [1, 2, 3, 4, 5].map((n) => ({ price: n * 1.5 + i, quantity: n })) },
    },
    retry: { attempts: 1, backoff: { type: 'fixed', delayMs: 100, maxDelayMs: 100, jitter: 0 } },
    timeoutMs: 30_000,
  };
}

async function oneTurn(variant, files, redisUrl, sdk) {
  const prefix = `bench-fn-${crypto.randomBytes(3).toString('hex')}`;
  const port = await infra.freePort();
  const started = now();
  const child = spawn(process.execPath, [...variant.flags, files[variant.file]], {
    cwd: path.join(ROOT, 'functions', FUNCTION),
    env: {
      PATH: process.env.PATH,
      REDIS_URL: redisUrl,
      BATON_QUEUE_PREFIX: prefix,
      METRICS_PORT: String(port),
      LOG_LEVEL: 'warn',
      [`${FUNCTION.toUpperCase()}_CONCURRENCY`]: '16',
      ...variant.env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const connection = new infra.Redis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(sdk.functionQueueName(FUNCTION), { connection, prefix });
  try {
    const readyAt = await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${stderr}`);
        return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok ? now() : undefined;
      },
      60_000,
      `${variant.name} ready`,
    );
    const readyCpuMs = procStat(child.pid).cpuMs;
    await sleep(IDLE_MS);
    const idle = memory(child.pid);
    const cpuBefore = procStat(child.pid).cpuMs;
    const inbox = sdk.redisKeys(prefix).inbox;
    const t0 = now();
    const jobs = Array.from({ length: JOBS }, (_, i) => jobData(i));
    await queue.addBulk(jobs.map((data) => ({ name: 'step', data, opts: { jobId: data.stepExecutionId } })));
    // Each job ends with one final report on the inbox (a "started" report only past its delay).
    await waitFor(
      async () => ((await connection.xlen(inbox)) >= JOBS ? true : undefined),
      300_000,
      `${JOBS} reports`,
      20,
    );
    const entries = await connection.xrange(inbox, '-', '+');
    const finals = entries.filter(([, fields]) => /"type":"step\.(succeeded|failed)"/.test(fields.join(' ')));
    const failed = finals.filter(([, fields]) => /"type":"step\.failed"/.test(fields.join(' '))).length;
    const elapsedMs = now() - t0;
    const after = memory(child.pid);
    const cpuMs = procStat(child.pid).cpuMs - cpuBefore;
    if (finals.length < JOBS || failed) throw new Error(`${finals.length} final reports, ${failed} failed`);
    await sleep(REST_MS);
    const rest = memory(child.pid);
    return {
      readyMs: readyAt - started,
      readyCpuMs,
      idleRssMb: idle.rssMb,
      jobsPerSec: (JOBS * 1000) / elapsedMs,
      cpuMsPerJob: cpuMs / JOBS,
      rssAfterJobsMb: after.rssMb,
      peakRssMb: after.peakMb,
      restRssMb: rest.rssMb,
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    const keys = await connection.keys(`${prefix}:*`);
    if (keys.length) await connection.del(...keys);
    connection.disconnect();
  }
}

/**
 * A copy of the bundle and start.js in its own folder, with the code cache written by `flags`: V8
 * takes a cache only from the flags that wrote it, so each flag set has its own.
 */
function launcherWithCache(dir, bundled, name, flags) {
  const own = path.join(dir, name);
  fs.mkdirSync(own);
  for (const file of [bundled.outfile, bundled.launcher]) fs.copyFileSync(file, path.join(own, path.basename(file)));
  const launcher = path.join(own, path.basename(bundled.launcher));
  // As the image build writes it: the CMD's node and flags, after a start.
  writeCodeCache(launcher, { flags, cwd: path.join(ROOT, 'functions', FUNCTION) });
  return launcher;
}

/** Runs the scenario; `opts`: {redisUrl, reps, log}. Returns the report section. */
async function runFunctionScenario({ redisUrl, reps, log }) {
  const sdk = require('@baton/sdk');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-bench-fn-'));
  const compiled = path.join(ROOT, 'functions', FUNCTION, 'dist', 'main.js');
  // The bundle sits beside the function's folder so that a package kept outside resolves as in the image.
  const bundled = await bundleFunction(path.join(ROOT, 'functions', FUNCTION), path.join(dir, 'main.js'));
  const before = process.env.BENCH_FUNCTION_BEFORE ? path.resolve(process.env.BENCH_FUNCTION_BEFORE) : undefined;
  const beforeFlags = process.env.BENCH_FUNCTION_BEFORE_FLAGS?.split(' ').filter(Boolean) ?? IMAGE_NODE_FLAGS;
  const tried = (process.env.BENCH_FUNCTION_TRY_FLAGS ?? '')
    .split(';')
    .map((set) => set.split(' ').filter(Boolean))
    .filter((flags) => flags.length);
  const files = {
    compiled,
    bundle: bundled.outfile,
    before,
    launcher: launcherWithCache(dir, bundled, 'image', IMAGE_NODE_FLAGS),
    noFlagsLauncher: launcherWithCache(dir, bundled, 'no-flags', NO_FLAGS),
    ...Object.fromEntries(tried.map((flags, i) => [`tried${i}`, launcherWithCache(dir, bundled, `tried${i}`, flags)])),
  };
  const variants = [
    { name: 'compiled', file: 'compiled', flags: [], env: {} },
    ...(before ? [{ name: 'before', file: 'before', flags: beforeFlags, env: {} }] : []),
    { name: 'bundle', file: 'bundle', flags: [], env: {} },
    { name: 'no-flags', file: 'noFlagsLauncher', flags: NO_FLAGS, env: {} },
    { name: 'image', file: 'launcher', flags: IMAGE_NODE_FLAGS, env: {} },
    ...tried.map((flags, i) => ({ name: `flags:${flags.join(' ')}`, file: `tried${i}`, flags, env: {} })),
  ];
  const turns = Object.fromEntries(variants.map((v) => [v.name, []]));
  try {
    for (let rep = 1; rep <= reps; rep++) {
      for (const variant of variants) {
        const t = await oneTurn(variant, files, redisUrl, sdk);
        turns[variant.name].push(t);
        log(
          `function ${variant.name} #${rep}: ready ${t.readyMs.toFixed(0)} ms (${t.readyCpuMs.toFixed(0)} ms CPU), ` +
            `idle ${t.idleRssMb.toFixed(1)} MB, ${t.jobsPerSec.toFixed(0)} jobs/s, after ${JOBS} jobs ` +
            `${t.rssAfterJobsMb.toFixed(1)} MB (peak ${t.peakRssMb.toFixed(1)}), at rest ${t.restRssMb.toFixed(1)} MB`,
        );
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const metrics = [
    'readyMs',
    'readyCpuMs',
    'idleRssMb',
    'jobsPerSec',
    'cpuMsPerJob',
    'rssAfterJobsMb',
    'peakRssMb',
    'restRssMb',
  ];
  const medians = Object.fromEntries(
    variants.map((v) => [
      v.name,
      Object.fromEntries(metrics.map((m) => [m, round(median(turns[v.name].map((t) => t[m])), 2)])),
    ]),
  );
  const base = medians.compiled;
  const vsCompiled = Object.fromEntries(
    variants.map((v) => [v.name, Object.fromEntries(metrics.map((m) => [m, round(medians[v.name][m] / base[m], 2)]))]),
  );
  return {
    function: FUNCTION,
    jobs: JOBS,
    reps,
    flags: {
      image: IMAGE_NODE_FLAGS,
      'no-flags': NO_FLAGS,
      ...(before ? { before: beforeFlags } : {}),
      ...Object.fromEntries(tried.map((flags) => [`flags:${flags.join(' ')}`, flags])),
    },
    restMs: REST_MS,
    medians,
    vsCompiled,
    turns,
  };
}

function printFunctionFootprint(section) {
  const rows = Object.entries(section.medians);
  const head = [
    'variant',
    'ready ms',
    'ready CPU ms',
    'idle RSS MB',
    'jobs/s',
    'CPU ms/job',
    'RSS after MB',
    'peak MB',
    'at rest MB',
  ];
  process.stdout.write(`\nfunction ${section.function}, ${section.jobs} jobs, median of ${section.reps}\n`);
  process.stdout.write(`${head.map((h) => h.padStart(13)).join('')}\n`);
  for (const [name, m] of rows) {
    const cells = [
      m.readyMs,
      m.readyCpuMs,
      m.idleRssMb,
      m.jobsPerSec,
      m.cpuMsPerJob,
      m.rssAfterJobsMb,
      m.peakRssMb,
      m.restRssMb,
    ];
    process.stdout.write(`${name.padStart(13)}${cells.map((c) => String(c).padStart(13)).join('')}\n`);
  }
}

module.exports = { runFunctionScenario, printFunctionFootprint };
