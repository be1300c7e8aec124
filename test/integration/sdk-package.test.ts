import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { saveDefinition } from '@baton/engine';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, freePort, waitFor, type TestEnv } from '../support/env';

/**
 * @baton/sdk as someone outside this repository gets it: `npm pack -w sdk` makes the tarball, a
 * project under the system's temporary directory installs it with zod (from the npm cache when it
 * can), a CommonJS function there `require`s it and runs as its own process against real Redis, and
 * a workflow calling that function completes through a running coordinator. Its types compile from
 * TypeScript in that project, with the repository's compiler, and templates/function builds on it.
 */
const ROOT = path.resolve(__dirname, '../..');
const exec = promisify(execFile);
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');

/** What the SDK may bring along (issue 15): nothing of the engine's. */
const ALLOWED_DEPENDENCIES = ['@opentelemetry/api', 'bullmq', 'ioredis', 'pino', 'prom-client', 'zod'];
const ENGINE_PACKAGES = ['pg', 'postgrator', 'jsonata', 'ajv', 'express', 'yaml', 'workerpool'];

const FUNCTION_JS = `'use strict';
const { defineFunction, NonRetryableError, runFunctionMain } = require('@baton/sdk');
const { z } = require('zod');

const shout = defineFunction({
  name: 'sdk-shout',
  input: z.object({ text: z.string() }),
  handler: async ({ text }, ctx) => {
    if (!text) throw new NonRetryableError('EMPTY_TEXT', 'nothing to shout');
    ctx.log.info('shouting', { length: text.length, attempt: ctx.attempt });
    return { shouted: text.toUpperCase() + '!', key: ctx.idempotencyKey };
  },
});

runFunctionMain(shout.name, () => shout).catch((err) => {
  process.stderr.write('sdk-shout failed to start: ' + err.message + '\\n');
  process.exit(1);
});
`;

const FUNCTION_TS = `import {
  defineFunction,
  NonRetryableError,
  RetryableError,
  runFunctionMain,
  type FunctionContext,
  type StepJobData,
} from '@baton/sdk';
import { z } from 'zod';

export const shout = defineFunction({
  name: 'sdk-shout',
  input: z.object({ text: z.string() }),
  handler: async ({ text }, ctx: FunctionContext) => {
    if (!text) throw new NonRetryableError('EMPTY_TEXT', 'nothing to shout');
    if (ctx.signal.aborted) throw new RetryableError('LATER', 'try again', { retryAfterMs: 1_000 });
    return { shouted: text.toUpperCase(), attempt: ctx.attempt };
  },
});

export const job: Pick<StepJobData, 'runId' | 'stepId'> = { runId: 'r', stepId: 's' };
void runFunctionMain(shout.name, () => ({ definition: shout, close: async () => undefined }));
`;

/** Must not compile: the input's type reaches the handler (the declarations are not `any`). */
const WRONG_TS = `import { defineFunction } from '@baton/sdk';
import { z } from 'zod';

export const wrong = defineFunction({
  name: 'wrong',
  input: z.object({ text: z.string() }),
  handler: async (input) => input.missing,
});
`;

describe('@baton/sdk, packed and installed outside the workspace', () => {
  let dir: string;
  let project: string;
  let tarball: string;
  let env: TestEnv;
  let engine: Engine;
  let fn: ChildProcess | undefined;
  let fnOutput = '';
  let metricsPort: number;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-sdk-'));
    project = path.join(dir, 'project');
    fs.mkdirSync(project);
    // prepack builds the SDK (tsc -b) before packing.
    await exec('npm', ['pack', '-w', 'sdk', '--pack-destination', dir], { cwd: ROOT, timeout: 180_000 });
    const name = fs.readdirSync(dir).find((f) => /^baton-sdk-.*\.tgz$/.test(f));
    if (!name) throw new Error(`npm pack left no tarball in ${dir}`);
    tarball = path.join(dir, name);
    fs.writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'acme-functions', version: '1.0.0', private: true }, null, 2),
    );
    // From the npm cache when it holds everything; the registry otherwise. No install scripts.
    await exec(
      'npm',
      ['install', tarball, 'zod@^4', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund'],
      { cwd: project, timeout: 240_000 },
    );
    fs.writeFileSync(path.join(project, 'shout.js'), FUNCTION_JS);
  }, 420_000);

  afterAll(async () => {
    if (fn && fn.exitCode === null) fn.kill('SIGKILL');
    await engine?.close();
    await env?.cleanup();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('packs a package.json without workspace references, with CommonJS and declarations', () => {
    const listing = execTar(tarball);
    expect(listing).toEqual(
      expect.arrayContaining(['package/package.json', 'package/dist/index.js', 'package/dist/index.d.ts']),
    );
    expect(listing.filter((f) => f.endsWith('.tsbuildinfo'))).toEqual([]);
    const manifest = JSON.parse(fs.readFileSync(path.join(project, 'node_modules/@baton/sdk/package.json'), 'utf8'));
    const text = JSON.stringify(manifest);
    expect(text).not.toMatch(/workspace:|file:|link:|@baton\/(engine|workflow|shared)/);
    expect(manifest.private).toBeUndefined();
    expect(manifest.main).toBe('dist/index.js');
    expect(manifest.types).toBe('dist/index.d.ts');
    const runtime = [
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.peerDependencies ?? {}),
      ...Object.keys(manifest.optionalDependencies ?? {}),
    ];
    expect(runtime.filter((d) => !ALLOWED_DEPENDENCIES.includes(d))).toEqual([]);
  });

  it('installs nothing of the engine, nor the OpenTelemetry SDK', () => {
    const installed = (name: string) => fs.existsSync(path.join(project, 'node_modules', name, 'package.json'));
    expect(ENGINE_PACKAGES.filter(installed)).toEqual([]);
    expect(['@opentelemetry/sdk-node', '@opentelemetry/exporter-trace-otlp-http'].filter(installed)).toEqual([]);
  });

  it('is required from CommonJS', async () => {
    const { stdout } = await exec(
      process.execPath,
      [
        '-e',
        `const sdk = require('@baton/sdk');
         const names = ['defineFunction', 'runFunctionMain', 'NonRetryableError', 'RetryableError', 'PROTOCOL_VERSION'];
         process.stdout.write(JSON.stringify(names.map((n) => [n, typeof sdk[n]])));`,
      ],
      { cwd: project },
    );
    expect(JSON.parse(stdout)).toEqual([
      ['defineFunction', 'function'],
      ['runFunctionMain', 'function'],
      ['NonRetryableError', 'function'],
      ['RetryableError', 'function'],
      ['PROTOCOL_VERSION', 'number'],
    ]);
  });

  it("its types compile from TypeScript, and catch a handler's mistake", async () => {
    fs.writeFileSync(path.join(project, 'shout.ts'), FUNCTION_TS);
    fs.writeFileSync(path.join(project, 'wrong.ts'), WRONG_TS);
    const tsconfig = (files: string[]) => ({
      compilerOptions: {
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        noEmit: true,
        // The SDK's own declarations are checked (not skipped); @types/node comes from the repository.
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules/@types')],
      },
      files,
    });
    fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify(tsconfig(['shout.ts'])));
    fs.writeFileSync(path.join(project, 'tsconfig.wrong.json'), JSON.stringify(tsconfig(['wrong.ts'])));
    await expect(exec(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: project })).resolves.toBeDefined();
    const wrong = await exec(process.execPath, [TSC, '-p', 'tsconfig.wrong.json'], { cwd: project }).then(
      () => 'compiled',
      (err: { stdout: string }) => err.stdout,
    );
    expect(wrong).toMatch(/wrong\.ts.*error TS2339: Property 'missing' does not exist/);
  }, 120_000);

  it('builds templates/function on it: unit tests pass, the bundle is tree-shaken', async () => {
    const copy = path.join(dir, 'template');
    fs.cpSync(path.join(ROOT, 'templates/function'), copy, { recursive: true });
    fs.copyFileSync(tarball, path.join(copy, 'vendor', path.basename(tarball)));
    // As the template's README says: the tarball from vendor/, then npm test (tsc, node --test).
    await exec(
      'npm',
      [
        'install',
        `./vendor/${path.basename(tarball)}`,
        '--prefer-offline',
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
      ],
      { cwd: copy, timeout: 240_000 },
    );
    const { stdout } = await exec('npm', ['test'], { cwd: copy, timeout: 120_000 });
    expect(stdout).toMatch(/# pass [1-9]/);
    expect(stdout).toMatch(/# fail 0/);
    expect(fs.existsSync(path.join(copy, 'dist/src/main.js'))).toBe(true);
    // What its Dockerfile runs next: the SDK's baton-bundle with the project's own esbuild.
    await exec('npm', ['run', 'bundle'], { cwd: copy, timeout: 120_000 });
    const bundle = fs.readFileSync(path.join(copy, 'bundle/main.js'), 'utf8');
    expect(fs.existsSync(path.join(copy, 'bundle/start.js'))).toBe(true);
    // Every package inlined, and tree-shaken from the SDK's TypeScript sources and bullmq's ES
    // modules: bullmq's PostgreSQL backend (its migrations' SQL), which nothing calls, is left out.
    expect(bundle).not.toMatch(/require\("(@baton\/sdk|bullmq|ioredis|zod|pino|prom-client)"\)/);
    expect(bundle).toContain('acme-shout');
    expect(bundle).not.toContain('CREATE TABLE');
  }, 360_000);

  describe('a function built on it, run as its own process', () => {
    beforeAll(async () => {
      env = await createTestEnv('sdk_package');
      // The coordinator and reconciler only: the function's worker is the child process below.
      engine = await startEngine(env, []);
      await saveDefinition(env.pool, {
        name: 'shout-it',
        steps: [{ id: 'shout', function: 'sdk-shout', input: { text: '{{ input.text }}' } }],
        output: { shouted: '{{ steps.shout.output.shouted }}' },
      });
      metricsPort = await freePort();
      const childEnv: NodeJS.ProcessEnv = {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        // What the chart gives a function without a database of its own: no DATABASE_URL.
        REDIS_HOST: env.config.redis.host,
        REDIS_PORT: String(env.config.redis.port),
        BATON_QUEUE_PREFIX: env.config.queuePrefix,
        METRICS_PORT: String(metricsPort),
        LOG_LEVEL: 'info',
      };
      fn = spawn(process.execPath, ['shout.js'], { cwd: project, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      fn.stdout?.on('data', (d) => (fnOutput += d));
      fn.stderr?.on('data', (d) => (fnOutput += d));
      await waitFor(
        async () => {
          if (fn?.exitCode !== null) throw new Error(`exited ${fn?.exitCode}: ${fnOutput}`);
          return (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok || undefined;
        },
        20_000,
        'the function process to answer /healthz',
      );
    }, 60_000);

    it('runs a workflow step through the coordinator', async () => {
      const runId = await engine.start('shout-it', { text: 'hello' });
      const run = await engine.waitForRun(runId);
      expect({ status: run.status, output: run.output }).toEqual({
        status: 'succeeded',
        output: { shouted: 'HELLO!' },
      });
      const { rows } = await env.pool.query(
        `SELECT e.output, a.worker_id FROM step_executions e JOIN step_attempts a ON a.step_execution_id = e.id
          WHERE e.run_id = $1`,
        [runId],
      );
      expect(rows).toEqual([{ output: { shouted: 'HELLO!', key: `${runId}:shout` }, worker_id: expect.any(String) }]);
      const logs = await env.pool.query('SELECT message FROM run_logs WHERE run_id = $1', [runId]);
      expect(logs.rows.map((r) => r.message)).toContain('shouting');
    });

    it("fails the run with the handler's own code when it throws NonRetryableError", async () => {
      const runId = await engine.start('shout-it', { text: '' });
      const run = await engine.waitForRun(runId);
      expect(run.status).toBe('failed');
      expect(run.error).toMatchObject({ stepId: 'shout', code: 'EMPTY_TEXT', nonRetryable: true, attempt: 1 });
    });

    it('serves its step metrics and stops cleanly on SIGTERM', async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toMatch(/baton_steps_total\{[^}]*function="sdk-shout"[^}]*status="succeeded"[^}]*\} 1/);
      const exited = new Promise<number | null>((resolve) => fn?.once('exit', (code) => resolve(code)));
      fn?.kill('SIGTERM');
      expect(await exited).toBe(0);
    });
  });
});

/** The file names a tarball holds. */
function execTar(file: string): string[] {
  return require('node:child_process')
    .execFileSync('tar', ['-tzf', file], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
}
