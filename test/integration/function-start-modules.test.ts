import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleFunction, IMAGE_NODE_FLAGS, writeCodeCache } from '@baton/sdk/dist/bundle';
import { createTestEnv, freePort, waitFor, type TestEnv } from '../support/env';

/**
 * What a function image's process has loaded once it is ready, read from its own
 * `process.moduleLoadList` (written by a `--require`d preload when the process exits; `--require` is
 * a node option, so V8 still takes the image's code cache). Node's built-ins are what a bundle cannot
 * trim: this checks the ones a function that never fetches has no use for.
 *
 * pg asks at load whether it runs in a Cloudflare Worker, and on Node 20 (no `navigator`) it asks by
 * constructing a `Response`, which loads Node's fetch implementation (undici): 5.6 MB of idle RSS
 * and some 20 ms of start in every function that uses PostgreSQL (docs/PERFORMANCE.md). The SDK's
 * bundler answers that question at build time.
 */

const ROOT = path.resolve(__dirname, '../..');

/** Node's fetch, as `process.moduleLoadList` names it. */
const FETCH_MODULE = /undici/;

/** Starts `launcher` as its image does, waits for /healthz, stops it; returns the built-ins it had loaded. */
async function modulesLoadedAtReady(
  env: TestEnv,
  launcher: string,
  cwd: string,
  preload: string,
  out: string,
): Promise<string[]> {
  const port = await freePort();
  const child = spawn(process.execPath, [...IMAGE_NODE_FLAGS, '--require', preload, launcher], {
    cwd,
    env: {
      PATH: process.env.PATH,
      REDIS_HOST: env.config.redis.host,
      REDIS_PORT: String(env.config.redis.port),
      BATON_QUEUE_PREFIX: env.config.queuePrefix,
      DATABASE_URL: env.databaseUrl,
      METRICS_PORT: String(port),
      LOG_LEVEL: 'warn',
      LOADED_MODULES_FILE: out,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${stderr}`);
        return (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok || undefined;
      },
      30_000,
      `${launcher} ready`,
    );
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  return JSON.parse(fs.readFileSync(out, 'utf8')) as string[];
}

describe('a function image at ready: the built-ins it loaded', () => {
  let env: TestEnv;
  let dir: string;
  let preload: string;

  beforeAll(async () => {
    env = await createTestEnv('function_start_modules');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-start-modules-'));
    preload = path.join(dir, 'record-modules.js');
    fs.writeFileSync(
      preload,
      `process.on('exit', () => require('fs').writeFileSync(process.env.LOADED_MODULES_FILE, JSON.stringify(process.moduleLoadList)));\n`,
    );
  });

  afterAll(async () => {
    fs.rmSync(dir, { recursive: true, force: true });
    await env.cleanup();
  });

  test.each(['fetch-orders', 'transform'])(
    "%s, bundled as its image runs it, has not loaded Node's fetch",
    async (name) => {
      const functionDir = path.join(ROOT, 'functions', name);
      const bundle = await bundleFunction(functionDir, path.join(dir, name, 'main.js'));
      writeCodeCache(bundle.launcher, {
        cwd: functionDir,
        env: { PATH: process.env.PATH, DATABASE_URL: env.databaseUrl },
      });
      const loaded = await modulesLoadedAtReady(
        env,
        bundle.launcher,
        functionDir,
        preload,
        path.join(dir, `${name}.json`),
      );
      // The list is real: the function's own built-ins are in it.
      expect(loaded).toEqual(expect.arrayContaining(['NativeModule http', 'NativeModule net']));
      expect(loaded.filter((m) => FETCH_MODULE.test(m))).toEqual([]);
    },
  );

  test('pg itself, unbundled, does load it on this node (what the bundler removes)', () => {
    const major = Number(process.versions.node.split('.')[0]);
    const script = `require('pg'); process.stdout.write(JSON.stringify(process.moduleLoadList))`;
    const out = execFileSync(process.execPath, ['-e', script], { cwd: path.join(ROOT, 'functions', 'fetch-orders') });
    const fetchLoaded = (JSON.parse(out.toString()) as string[]).some((m) => FETCH_MODULE.test(m));
    // Node 21+ has `navigator`, which pg reads first: then nothing loads fetch, bundled or not.
    expect(fetchLoaded).toBe(major < 21);
  });
});
