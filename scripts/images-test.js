#!/usr/bin/env node
'use strict';
/* global fetch -- Node 20+ has it built in. */
/**
 * `npm run images:test`: build every image skaffold.yaml lists from the real Dockerfile, without a
 * Docker engine (buildah, chroot isolation, vfs storage), check that it runs as non-root and holds
 * only its own workspace, boot its entry point against the local Redis and PostgreSQL until it is
 * ready, stop it with SIGTERM, and remove what was built. Also builds templates/function/ on its own
 * (its Dockerfile, the packed @baton/sdk in its vendor/, no repository around it) and boots it.
 *
 * It prints, per image: production node_modules MB, image MB, idle RSS MB (the node process, 3 s
 * after it is ready) and start-to-ready ms (node's start to the first 200 on /healthz, what a KEDA
 * scale-from-zero waits; a function's is the median of FUNCTION_READY_BOOTS starts), and fails a
 * function image above FUNCTION_TARGETS (issue 15) or above the budget its package.json gives it
 * (limitsOf). A function image holds its own workspace and
 * sdk/, never engine/ nor workflow/, boots without DATABASE_URL unless it depends on pg, and starts
 * through start.js with a code cache V8 takes.
 *
 * Registries of images are out of reach here, so the base (NODE_IMAGE) is a stand-in made once per
 * machine: debootstrap --variant=minbase bookworm plus this machine's node, npm and CA bundle, with
 * the same uid 1000 `node` user as the official image. Needs root, buildah and debootstrap
 * (apt-get install buildah debootstrap). `--keep` keeps the built images, `--keep-cache` the layer
 * cache for a faster next run; `--only=<image>` builds one (and the coordinator, which migrates).
 */
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const YAML = require('yaml');
const { median } = require('../bench/lib/stats');

const ROOT = path.resolve(__dirname, '..');
const WORK = path.join(ROOT, '.tools/images');
// A store of its own under .tools/ (the base stays there between runs). overlay shares layers
// cheaply; BATON_BUILDAH_STORAGE=vfs is the fallback where the kernel offers no overlayfs.
const DRIVER = process.env.BATON_BUILDAH_STORAGE || 'overlay';
const STORAGE = [
  '--storage-driver',
  DRIVER,
  '--root',
  path.join(WORK, `storage-${DRIVER}`),
  '--runroot',
  path.join(WORK, `run-${DRIVER}`),
];
const NODE_VERSION = process.version;
const BASE = `localhost/baton-standin-node:${NODE_VERSION.slice(1)}`;
const DATABASE_SERVER = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const keepCache = args.includes('--keep-cache');
const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);

/** node_modules/<name> entries package-lock.json marks dev-only: none may reach an image. Read at
 * each build, from the lockfile the build context holds then. */
function devOnlyPackages() {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  return new Set(
    Object.entries(lock.packages)
      .filter(([key, meta]) => meta.dev && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(key))
      .map(([key]) => key),
  );
}

const log = (msg) => process.stdout.write(`[images] ${msg}\n`);

/**
 * What a function image may weigh and take: issue 15's targets for a function with no heavy
 * dependency of its own (docs/PERFORMANCE.md, "Function images").
 */
const FUNCTION_TARGETS = { nodeModulesMb: 40, idleRssMb: 60, readyMs: 250 };

/**
 * The limits a function image is held to: FUNCTION_TARGETS, or the function's own budget where a
 * dependency of its own costs more (package.json `"baton": {"footprint": {"idleRssMb": 72, "why":
 * "nodemailer"}}`): a budget names its reason, may only raise a target, and is printed beside the
 * figures, so a regression past it still fails.
 */
function limitsOf(image, manifest) {
  const own = manifest.baton?.footprint;
  if (own === undefined) return { limits: FUNCTION_TARGETS, why: undefined };
  if (typeof own.why !== 'string' || !own.why.trim())
    throw new Error(`${image}: package.json baton.footprint must say why it needs more (baton.footprint.why)`);
  const limits = { ...FUNCTION_TARGETS };
  for (const [key, value] of Object.entries(own)) {
    if (key === 'why') continue;
    if (!(key in FUNCTION_TARGETS)) throw new Error(`${image}: baton.footprint.${key} is not one of the targets`);
    if (!(Number.isFinite(value) && value > FUNCTION_TARGETS[key]))
      throw new Error(`${image}: baton.footprint.${key} must be a number above the target ${FUNCTION_TARGETS[key]}`);
    limits[key] = value;
  }
  return { limits, why: own.why };
}
/** How long a booted process idles before its RSS is read. */
const IDLE_MS = 3_000;
/** Starts of a function image whose start-to-ready times give its figure (the median). */
const FUNCTION_READY_BOOTS = 5;

/** Clock ticks per second, the unit of a process's start time in /proc/<pid>/stat. */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
/**
 * When a process started, in Date.now() terms. The start is counted in ticks since boot; the boot
 * is read as now less /proc/uptime (10 ms steps), not /proc/stat's btime: btime is whole seconds,
 * so a start reckoned from it came out early by the boot's fraction of a second (0 to 1 000 ms,
 * 680 on one machine here) and every ready time with it.
 */
function processStartMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const uptimeMs = Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  return Date.now() - uptimeMs + (startTicks * 1000) / CLK_TCK;
}
function rssMb(pid) {
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
}

function buildah(argv, opts = {}) {
  return execFileSync('buildah', [...STORAGE, ...argv], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: opts.quiet === false ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
  });
}

function have(command) {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Images and their build arguments, as skaffold.yaml (the single source of how images are built) says. */
function imagesToBuild() {
  const docs = fs
    .readFileSync(path.join(ROOT, 'skaffold.yaml'), 'utf8')
    .split(/^---$/m)
    .map((text) => YAML.parse(text));
  const artifacts = docs.flatMap((d) => d.build?.artifacts ?? []);
  // The coordinator first: its image migrates the database the others boot against.
  const first = (a) => (a.buildArgs.WORKSPACE === 'services/coordinator' ? 0 : 1);
  const images = artifacts
    .map((a) => ({
      image: a.image,
      dockerfile: a.docker.dockerfile,
      buildArgs: a.docker.buildArgs,
      target: a.docker.target,
    }))
    .sort((a, b) => first(a) - first(b));
  // A function from its own repository: built from its own folder, with its own Dockerfile.
  images.push({ image: 'template-function', dockerfile: 'Dockerfile', buildArgs: {}, template: true });
  // A misspelt --only would otherwise build the coordinator alone and pass, measuring nothing asked for.
  if (only && !images.some((a) => a.image === only))
    throw new Error(`--only=${only}: no such image; known: ${images.map((a) => a.image).join(', ')}`);
  return images.filter((a) => !only || a.image === only || a.buildArgs.WORKSPACE === 'services/coordinator');
}

/** The stand-in for node:22-slim, made once per machine and kept in buildah's store. */
function ensureBase() {
  try {
    buildah(['inspect', '--type', 'image', BASE]);
    log(`base ${BASE} present`);
    return;
  } catch {
    // built below
  }
  const rootfs = path.join(WORK, 'rootfs');
  if (!fs.existsSync(path.join(rootfs, 'etc/debian_version'))) {
    log('debootstrap --variant=minbase bookworm (once per machine)');
    fs.rmSync(rootfs, { recursive: true, force: true });
    fs.mkdirSync(WORK, { recursive: true });
    execFileSync('debootstrap', ['--variant=minbase', 'bookworm', rootfs, 'http://deb.debian.org/debian'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  // This machine's node and npm, where the official image has them.
  const nodeBin = fs.realpathSync(process.execPath);
  const npmDir = path.dirname(
    require.resolve('npm/package.json', { paths: [path.join(path.dirname(nodeBin), '../lib/node_modules')] }),
  );
  fs.mkdirSync(path.join(rootfs, 'usr/local/bin'), { recursive: true });
  fs.mkdirSync(path.join(rootfs, 'usr/local/lib/node_modules'), { recursive: true });
  fs.copyFileSync(nodeBin, path.join(rootfs, 'usr/local/bin/node'));
  fs.chmodSync(path.join(rootfs, 'usr/local/bin/node'), 0o755);
  fs.rmSync(path.join(rootfs, 'usr/local/lib/node_modules/npm'), { recursive: true, force: true });
  fs.cpSync(npmDir, path.join(rootfs, 'usr/local/lib/node_modules/npm'), { recursive: true });
  for (const tool of ['npm', 'npx']) {
    const link = path.join(rootfs, 'usr/local/bin', tool);
    fs.rmSync(link, { force: true });
    fs.symlinkSync(`../lib/node_modules/npm/bin/${tool}-cli.js`, link);
  }
  // The CA bundle this machine trusts (a registry proxy may sign with its own CA).
  const ca = process.env.NODE_EXTRA_CA_CERTS || '/etc/ssl/certs/ca-certificates.crt';
  fs.mkdirSync(path.join(rootfs, 'etc/ssl/certs'), { recursive: true });
  fs.copyFileSync(ca, path.join(rootfs, 'etc/ssl/certs/ca-certificates.crt'));
  const passwd = fs.readFileSync(path.join(rootfs, 'etc/passwd'), 'utf8');
  if (!/^node:/m.test(passwd)) {
    fs.appendFileSync(path.join(rootfs, 'etc/passwd'), 'node:x:1000:1000::/home/node:/bin/sh\n');
    fs.appendFileSync(path.join(rootfs, 'etc/group'), 'node:x:1000:\n');
    fs.mkdirSync(path.join(rootfs, 'home/node'), { recursive: true });
    fs.chownSync(path.join(rootfs, 'home/node'), 1000, 1000);
  }
  fs.writeFileSync(
    path.join(WORK, 'Containerfile.base'),
    [
      'FROM scratch',
      'COPY rootfs/ /',
      'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin',
      'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt npm_config_cafile=/etc/ssl/certs/ca-certificates.crt',
      'CMD ["node"]',
      '',
    ].join('\n'),
  );
  log(`building ${BASE} from the rootfs`);
  buildah(['bud', '--isolation', 'chroot', '-f', path.join(WORK, 'Containerfile.base'), '-t', BASE, WORK]);
}

/**
 * templates/function/ as a user's own repository: a copy of the folder alone, the SDK packed into
 * its vendor/ and named in its package.json, as templates/function/README.md says.
 */
function templateContext() {
  const dir = path.join(WORK, 'template-function');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.cpSync(path.join(ROOT, 'templates/function'), dir, { recursive: true });
  execFileSync('npm', ['pack', '-w', 'sdk', '--pack-destination', path.join(dir, 'vendor')], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const tarball = fs.readdirSync(path.join(dir, 'vendor')).find((f) => f.endsWith('.tgz'));
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  manifest.dependencies['@baton/sdk'] = `file:vendor/${tarball}`;
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return dir;
}

/** Image size in MB, as the store holds it (a number of bytes, or text such as "317 MB"). */
/** A shell command's output, run inside a working container. */
function shellIn(container, script) {
  return buildah(['run', '--isolation', 'chroot', container, '--', 'sh', '-c', script]);
}

function imageMb(image) {
  const [info] = JSON.parse(buildah(['images', '--json', image]));
  if (typeof info?.size === 'number') return info.size / 1e6;
  const match = /^([\d.]+)\s*([kMG]?B)$/i.exec(String(info?.size ?? '').trim());
  if (!match) return NaN;
  const unit = { B: 1e-6, KB: 1e-3, MB: 1, GB: 1e3 }[match[2].toUpperCase()];
  return Number(match[1]) * unit;
}

/** The OCI config of a built image (User, Cmd, WorkingDir). */
function imageConfig(image) {
  const info = JSON.parse(buildah(['inspect', '--type', 'image', image]));
  return info.OCIv1?.config ?? {};
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(check, timeoutMs, what, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what} not within ${timeoutMs / 1000} s${last ? `: ${last.message}` : ''}`);
}

function psql(sql) {
  execFileSync('psql', [DATABASE_SERVER, '-v', 'ON_ERROR_STOP=1', '-qc', sql], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

/** Starts the image's own command (its CMD, in its WORKDIR, as its USER) and returns the process. */
function boot(container, image, env) {
  const cmd = imageConfig(image).Cmd;
  const envArgs = Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
  // Own process group: the whole `buildah run` tree can be signalled, and nothing else.
  const child = spawn(
    'buildah',
    [...STORAGE, 'run', '--isolation', 'chroot', '--network', 'host', ...envArgs, container, '--', ...cmd],
    {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, exited, output: () => output };
}

/**
 * Waits for a booted image's first 200 on `path`, polled every 5 ms (the moment it answers is the
 * figure); its node's PID and start-to-ready ms.
 */
async function untilReady(proc, port, path) {
  const readyAt = await Promise.race([
    waitFor(
      async () => ((await fetch(`http://127.0.0.1:${port}${path}`)).ok ? Date.now() : undefined),
      60_000,
      `${path} answering 200`,
      5,
    ),
    proc.exited.then((r) => {
      throw new Error(`exited early (${JSON.stringify(r)})`);
    }),
  ]);
  const [pid] = nodePids(proc.child.pid);
  return { pid, readyMs: pid ? readyAt - processStartMs(pid) : NaN };
}

/** PIDs of the `node` processes `buildah run` started (its process group), for a SIGTERM like the kubelet's. */
function nodePids(pgid) {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      if (pgrp === pgid && comm === 'node') pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

/** SIGTERM to the entry point only; resolves with its exit (buildah run passes the code through). */
async function stop(proc, graceMs) {
  const pids = nodePids(proc.child.pid);
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  const timer = new Promise((resolve) => setTimeout(() => resolve('timeout'), graceMs));
  const result = await Promise.race([proc.exited, timer]);
  if (result === 'timeout' || pids.length === 0) {
    try {
      process.kill(-proc.child.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
    throw new Error(pids.length ? `did not stop within ${graceMs / 1000} s of SIGTERM` : 'no node process to stop');
  }
  return result;
}

/** The figures table: one line per image, targets in the header. */
function printFigures(figures) {
  if (!figures.length) return;
  const t = FUNCTION_TARGETS;
  log(
    `function targets: node_modules <= ${t.nodeModulesMb} MB, idle RSS <= ${t.idleRssMb} MB, ready <= ${t.readyMs} ms`,
  );
  log(
    `${'image'.padEnd(28)}${'node_modules MB'.padStart(16)}${'image MB'.padStart(10)}${'idle RSS MB'.padStart(13)}${'ready ms'.padStart(10)}`,
  );
  for (const f of figures) {
    log(
      `${f.image.padEnd(28)}${f.nodeModulesMb.toFixed(0).padStart(16)}${f.imageMb.toFixed(0).padStart(10)}` +
        `${f.idleRssMb.toFixed(1).padStart(13)}${f.readyMs.toFixed(0).padStart(10)}` +
        (f.budget ? `  own budget: ${f.budget}` : ''),
    );
  }
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('needs root (buildah with chroot isolation, debootstrap)');
  for (const tool of ['buildah', 'debootstrap', 'psql']) {
    if (!have(tool))
      throw new Error(`${tool} is not installed (apt-get install buildah debootstrap postgresql-client)`);
  }
  const started = Date.now();
  ensureBase();

  const id = crypto.randomBytes(4).toString('hex');
  const database = `baton_images_test_${id}`;
  const dbUrl = new URL(DATABASE_SERVER);
  dbUrl.pathname = `/${database}`;
  const prefix = `baton-images-test-${id}`;
  const built = [];
  const containers = [];
  const failures = [];
  const figures = [];
  try {
    for (const { image, dockerfile, buildArgs, target, template } of imagesToBuild()) {
      const tag = `localhost/baton-images-test/${image}:${id}`;
      const t0 = Date.now();
      const devOnlyAtBuild = devOnlyPackages();
      const context = template ? templateContext() : ROOT;
      const argv = ['bud', '--isolation', 'chroot', '--network', 'host', '--layers'];
      argv.push('-f', path.join(context, dockerfile), '-t', tag);
      if (target) argv.push('--target', target);
      for (const [k, v] of Object.entries({ NODE_IMAGE: BASE, ...buildArgs })) argv.push('--build-arg', `${k}=${v}`);
      try {
        buildah([...argv, context]);
      } catch (first) {
        // Once more before it counts: a build fetches packages from the registry, and a fetch that
        // times out on a loaded machine is not the Dockerfile's fault. A second failure is.
        log(
          `${image}: build failed, trying once more: ${(first.stderr ?? first.message).trim().split('\n').slice(-3).join(' | ')}`,
        );
        try {
          buildah([...argv, context]);
        } catch (err) {
          failures.push(`${image}: build failed twice\n${err.stderr ?? err.message}`);
          continue;
        }
      }
      built.push(tag);
      log(`${image}: built in ${Math.round((Date.now() - t0) / 1000)} s`);

      const user = imageConfig(tag).User ?? '';
      const container = buildah(['from', '--pull-never', tag]).trim();
      containers.push(container);
      const uid = buildah(['run', '--isolation', 'chroot', container, '--', 'id', '-u']).trim();
      if (!user || uid === '0') {
        failures.push(`${image}: runs as root (USER '${user}', uid ${uid})`);
        continue;
      }
      // Only its own workspace (a function: its bundle, no sdk/, workflow/ nor engine/; a service:
      // engine/, workflow/ and sdk/ under it), and no package the lockfile marks dev-only.
      const workspace = buildArgs.WORKSPACE ?? 'template';
      const isFunction = template || workspace.startsWith('functions/');
      // A glob that matches nothing (a bundled function has no node_modules) is not an error.
      const listing = shellIn(container, 'ls -d /app/*/* /app/node_modules/@*/* 2>/dev/null; true').split('\n');
      const workspaceDirs = ['/app/services/', '/app/functions/', '/app/cli/'];
      if (isFunction && !template) workspaceDirs.push('/app/engine/', '/app/workflow/', '/app/sdk/');
      const others = listing.filter((l) => workspaceDirs.some((d) => l.startsWith(d)) && l !== `/app/${workspace}`);
      const devOnly = listing.map((l) => l.replace(/^\/app\//, '')).filter((l) => devOnlyAtBuild.has(l));
      if (others.length || devOnly.length) {
        failures.push(
          `${image}: holds other workspaces ${JSON.stringify(others)} or dev-only packages ${JSON.stringify(devOnly)}`,
        );
        continue;
      }

      // A function starts through the SDK's start.js with the code cache its build wrote: V8 must
      // take it with the CMD's own node and flags, or every replica compiles the bundle again.
      const cmd = imageConfig(tag).Cmd ?? [];
      if (isFunction && cmd.at(-1)?.endsWith('start.js')) {
        const verdict = buildah(['run', '--isolation', 'chroot', container, '--', ...cmd, '--check-code-cache']).trim();
        log(`${image}: code cache ${verdict}`);
        if (verdict !== 'accepted') {
          failures.push(`${image}: V8 does not take the code cache the build wrote (${verdict})`);
          continue;
        }
      }

      if (workspace === 'services/coordinator') {
        // The migration step, as the chart's hook Job runs it.
        psql(`CREATE DATABASE "${database}"`);
        buildah([
          'run',
          '--isolation',
          'chroot',
          '--network',
          'host',
          '--env',
          `DATABASE_URL=${dbUrl}`,
          '--env',
          'BATON_SEED_DEMO=true',
          container,
          '--',
          'node',
          '/app/scripts/migrate.js',
        ]);
        log(`${image}: node scripts/migrate.js migrated and seeded ${database}`);
      }

      const port = await freePort();
      // A function gets DATABASE_URL only when it keeps data of its own in PostgreSQL (as the chart does).
      const manifest = template ? {} : JSON.parse(fs.readFileSync(path.join(ROOT, workspace, 'package.json'), 'utf8'));
      const usesDatabase = !isFunction || Boolean(manifest.dependencies?.pg);
      const env = {
        ...(usesDatabase ? { DATABASE_URL: dbUrl.toString() } : {}),
        REDIS_HOST: '127.0.0.1',
        REDIS_PORT: '6379',
        BATON_QUEUE_PREFIX: prefix,
        LOG_LEVEL: 'warn',
        METRICS_PORT: String(port),
        PORT: String(port),
        SMTP_URL: 'smtp://127.0.0.1:1025',
        WORKFLOWS_DIR: '/app/workflows',
      };
      const ready = workspace === 'services/gateway' ? '/readyz' : '/healthz';
      const proc = boot(container, tag, env);
      try {
        const first = await untilReady(proc, port, ready);
        const { pid } = first;
        await new Promise((r) => setTimeout(r, IDLE_MS));
        const row = {
          image,
          // A bundled function may have none at all (templates/function/).
          nodeModulesMb: Number(shellIn(container, 'du -sm /app/node_modules 2>/dev/null || echo 0').split(/\s/)[0]),
          imageMb: imageMb(tag),
          idleRssMb: pid ? rssMb(pid) : NaN,
          readyMs: first.readyMs,
          isFunction,
        };
        figures.push(row);
        if (workspace === 'services/coordinator') {
          const res = await fetch(`http://127.0.0.1:${port}/backlog?function=fetch-orders`);
          const body = await res.json();
          if (res.status !== 200 || typeof body.backlog !== 'number')
            throw new Error(`/backlog answered ${res.status} ${JSON.stringify(body)}`);
        }
        // The pod's grace period is 30 s; the runtime promises to be gone well before.
        const t = Date.now();
        const result = await stop(proc, 30_000);
        if (result.code !== 0) throw new Error(`exited ${JSON.stringify(result)} on SIGTERM, not 0`);
        log(`${image}: ready on ${ready}, exited 0 ${Date.now() - t} ms after SIGTERM`);
        if (isFunction) {
          // One start is one sample of a noisy figure: a function's is the median of several.
          const samples = [first.readyMs];
          for (let i = 1; i < FUNCTION_READY_BOOTS; i += 1) {
            const again = boot(container, tag, env);
            try {
              samples.push((await untilReady(again, port, ready)).readyMs);
            } finally {
              await stop(again, 30_000);
            }
          }
          // NaN (no node process found) when no start could be timed: then it fails the target.
          row.readyMs = median(samples) ?? NaN;
          log(`${image}: ready ms over ${samples.length} starts: ${samples.map((v) => v.toFixed(0)).join(', ')}`);
          const { limits, why } = limitsOf(image, manifest);
          row.budget = why;
          for (const [key, limit] of Object.entries(limits)) {
            if (!(row[key] <= limit))
              failures.push(
                `${image}: ${key} ${row[key].toFixed(0)} is over ${why ? `its budget ${limit} (${why})` : `the target ${limit}`}`,
              );
          }
        }
      } catch (err) {
        await stop(proc, 5_000).catch(() => undefined);
        failures.push(`${image}: ${err.message}\n${proc.output().slice(-2000)}`);
      }
    }
  } finally {
    for (const c of containers) {
      try {
        buildah(['rm', c]);
      } catch {
        // already removed
      }
    }
    if (!keep) {
      for (const tag of built) {
        try {
          buildah(['rmi', tag]);
        } catch {
          // already gone
        }
      }
      // The intermediate layers too (the private store holds nothing else); the base stays. A
      // failed build leaves its working container holding layers: a prune that fails then must not
      // hide the failures reported below.
      if (!keepCache) {
        try {
          buildah(['rmi', '--prune']);
        } catch (err) {
          log(`could not prune the build cache: ${(err.stderr ?? err.message).trim().split('\n')[0]}`);
        }
      }
    }
    try {
      psql(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    } catch {
      // never created
    }
    try {
      const keys = execFileSync('redis-cli', ['--scan', '--pattern', `${prefix}:*`], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean);
      for (let i = 0; i < keys.length; i += 500)
        execFileSync('redis-cli', ['del', ...keys.slice(i, i + 500)], { stdio: 'ignore' });
    } catch {
      // nothing written
    }
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  printFigures(figures);
  if (failures.length) {
    for (const f of failures) process.stderr.write(`[images] FAILED ${f}\n`);
    throw new Error(`${failures.length} image(s) failed (${seconds} s)`);
  }
  log(`${built.length} images built, non-root, booted and stopped cleanly in ${seconds} s`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`[images] ${err.message}\n`);
    process.exit(1);
  },
);
