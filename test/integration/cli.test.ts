import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { NonRetryableError } from '@baton/workflow';
import { coordinatorQueue, createLogger, defineFunction, type CoordinatorClient } from '@baton/engine';
import { createApp } from '../../services/gateway/src/app';
import type { GatewayConfig } from '../../services/gateway/src/config';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';

/**
 * The built `baton` CLI (cli/dist/main.js, from `npx tsc -b`, which `npm test` runs first) as a real
 * child process against a listening gateway, with the coordinator and a function worker in this
 * process. Children run asynchronously: the gateway they call lives in this event loop.
 */

const CLI = path.resolve(__dirname, '../../cli/dist/main.js');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The exit code, with the child's output in the failure message. */
function exits(res: Result, code: number): void {
  if (res.code !== code) {
    throw new Error(`exit ${res.code}, expected ${code}\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`);
  }
}

/**
 * Names whose greeting waits until the test opens its gate: a step held running for as long as the
 * test needs, whatever the machine's load (a fixed duration raced the CLI's own start).
 */
const gates = new Map<string, Promise<void>>();

const greet = defineFunction({
  name: 'cli-greet',
  input: z.object({ name: z.string(), ms: z.number().default(0) }),
  handler: async ({ name, ms }, ctx) => {
    ctx.log.info('greeting', { name });
    const gate = gates.get(name);
    if (gate) await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
    if (ms) {
      // Slow on request, and stops when the run is cancelled.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        ctx.signal.addEventListener('abort', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      if (ctx.signal.aborted) throw ctx.signal.reason;
    }
    if (name === 'nobody') throw new NonRetryableError('NO_ONE', 'nobody to greet');
    return { text: `hello ${name}` };
  },
});

const HELLO_YAML = `
name: cli-hello
description: greets
input: { type: object, required: [name], properties: { name: { type: string }, ms: { type: number } } }
triggers:
  - http: {}
  - event: { name: cli.greet }
steps:
  - id: greet
    function: cli-greet
    retry: { attempts: 1 }
    input: { name: '{{ input.name }}', ms: '{{ input.ms }}' }
    compensate: { function: cli-undo }
  - id: shout
    function: cli-greet
    retry: { attempts: 1 }
    input: { name: '{{ steps.greet.output.text }}' }
output: '{{ steps.shout.output.text }}'
`;

describe('baton CLI', () => {
  let env: TestEnv;
  let coordinator: CoordinatorClient;
  let engine: Engine;
  let config: GatewayConfig;
  let url: string;
  let keyedUrl: string;
  let tmp: string;
  const servers: http.Server[] = [];
  const logger = createLogger('cli-test', 'silent');

  const listen = async (overrides: Partial<GatewayConfig> = {}): Promise<string> => {
    const app = createApp({
      pool: env.pool,
      redis: env.redis,
      coordinator,
      config: { ...config, ...overrides },
      logger,
    });
    const server = http.createServer(app);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  const baton = (args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Result> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [CLI, ...args],
        {
          env: { PATH: process.env.PATH ?? '', BATON_URL: url, ...opts.env },
          timeout: opts.timeoutMs ?? 30_000,
          cwd: tmp,
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });

  /** `baton` whose output can be read while it runs. */
  const batonStreaming = (args: string[]): { stdout: () => string; done: Promise<Result> } => {
    let stdout = '';
    let stderr = '';
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH ?? '', BATON_URL: url },
      cwd: tmp,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const done = new Promise<Result>((resolve) =>
      child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr })),
    );
    return { stdout: () => stdout, done };
  };

  beforeAll(async () => {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b)`);
    env = await createTestEnv('cli');
    coordinator = coordinatorQueue(env.queues);
    config = { ...env.config, port: 0, apiKeys: [], bodyLimit: '1mb' };
    engine = await startEngine(env, [greet], { bulkIntervalMs: 100 });
    url = await listen();
    keyedUrl = await listen({ apiKeys: ['cli-s3cret'] });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-cli-'));
    fs.writeFileSync(path.join(tmp, 'hello.yaml'), HELLO_YAML);
  });

  afterAll(async () => {
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.closeAllConnections();
            s.close(() => resolve());
          }),
      ),
    );
    await engine?.close();
    await coordinator?.close();
    await env?.cleanup();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('workflows apply: PUTs YAML as YAML, prints the version and the warnings', async () => {
    const first = await baton(['workflows', 'apply', 'hello.yaml']);
    expect(first).toMatchObject({ code: 0, stdout: 'cli-hello: version 1 (stored)\n' });
    // cli-undo has no worker: saved, with a warning naming the path.
    expect(first.stderr).toContain("warning: steps[0].compensate.function: no worker of function 'cli-undo'");

    const again = await baton(['--json', 'workflows', 'apply', 'hello.yaml']);
    exits(again, 0);
    expect(JSON.parse(again.stdout)).toMatchObject({ name: 'cli-hello', version: 1 });

    const list = await baton(['workflows', 'list']);
    expect(list.stdout).toContain('cli-hello  v1  greets');
  });

  it('workflows pause|resume: POSTs the action, prints the state; list shows it', async () => {
    await baton(['workflows', 'apply', 'hello.yaml']);
    const paused = await baton(['workflows', 'pause', 'cli-hello']);
    exits(paused, 0);
    expect(paused.stdout).toMatch(/^cli-hello: paused \(since \d{4}-\d\d-\d\dT/);
    expect((await baton(['workflows', 'list'])).stdout).toContain('cli-hello  v1  (paused)  greets');
    const resumed = await baton(['--json', 'workflows', 'resume', 'cli-hello']);
    exits(resumed, 0);
    expect(JSON.parse(resumed.stdout)).toEqual({ name: 'cli-hello', paused: false, pausedAt: null });
    expect((await baton(['workflows', 'list'])).stdout).toContain('cli-hello  v1  greets');
    const unknown = await baton(['workflows', 'pause', 'cli-nope']);
    exits(unknown, 1);
  });

  it('workflows apply: an invalid definition prints the API message and each problem by path, exit 1', async () => {
    fs.writeFileSync(
      path.join(tmp, 'bad.json'),
      JSON.stringify({ name: 'cli-bad', steps: [{ id: 'a', function: 'x', needs: ['nope'] }] }),
    );
    const res = await baton(['workflows', 'apply', 'bad.json']);
    exits(res, 1);
    expect(res.stderr).toContain('error: invalid workflow definition');
    expect(res.stderr).toContain('INVALID_DEFINITION (HTTP 400)');
    expect(res.stderr).toContain("- steps[0].needs[0]: unknown step 'nope'");
  });

  it('runs start prints the run id; runs get --watch follows it and exits 0 when it succeeds', async () => {
    let open = (): void => undefined;
    gates.set('Ada', new Promise<void>((resolve) => (open = resolve)));
    const started = await baton(['runs', 'start', 'cli-hello', '--input', '{"name":"Ada"}']);
    exits(started, 0);
    const runId = started.stdout.trim();
    expect(runId).toMatch(UUID);

    // Not a terminal: a line whenever a step changes. greet is held running until the watch has
    // printed it so, then let go: seen running, then done.
    const watching = batonStreaming(['runs', 'get', runId, '--watch', '--interval', '100']);
    await waitFor(
      async () => (/greet +cli-greet +running +1\/1/.test(watching.stdout()) ? true : undefined),
      30_000,
      'the watch to show greet running',
    );
    open();
    const watched = await watching.done;
    gates.delete('Ada');
    expect(watched.stderr).toBe('');
    exits(watched, 0);
    expect(watched.stdout).toContain(`run ${runId}`);
    expect(watched.stdout).toMatch(/greet +cli-greet +running +1\/1/);
    expect(watched.stdout).toMatch(/✓ +greet +cli-greet +succeeded +1\/1 +\d+(ms|\.\ds)\n/);
    expect(watched.stdout).toMatch(/✓ +shout +cli-greet +succeeded +1\/1/);
    expect(watched.stdout).toMatch(/run succeeded in \S+\n$/);

    const shown = await baton(['runs', 'get', runId]);
    exits(shown, 0);
    expect(shown.stdout).toContain('output: "hello hello Ada"');

    const json = await baton(['--json', 'runs', 'get', runId]);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: runId, status: 'succeeded', output: 'hello hello Ada' });

    const list = await baton(['runs', 'list', '--workflow', 'cli-hello', '--limit', '1']);
    expect(list.stdout).toContain(runId);
  });

  it('runs get --watch exits non-zero for a failing run and says why; runs retry --input resumes it', async () => {
    const started = await baton(['--json', 'runs', 'start', 'cli-hello', '--input', '{"name":"nobody"}']);
    exits(started, 0);
    const { runId, status } = JSON.parse(started.stdout);
    // An unconstrained workflow starts with its first step queued (a direct start).
    expect(status).toBe('running');

    const watched = await baton(['runs', 'get', runId, '--watch', '--interval', '100']);
    exits(watched, 2);
    expect(watched.stdout).toMatch(/✗ +greet +cli-greet +failed +1\/1 .*NO_ONE: nobody to greet/);
    expect(watched.stdout).toMatch(/run failed at step greet \(cli-greet\), attempt 1: NO_ONE: nobody to greet\n$/);

    // Retried from the failed step with another input, it succeeds.
    fs.writeFileSync(path.join(tmp, 'retry-input.json'), JSON.stringify({ name: 'Zed' }));
    const retried = await baton([
      'runs',
      'retry',
      runId,
      '--input',
      '@retry-input.json',
      '--watch',
      '--interval',
      '100',
    ]);
    exits(retried, 0);
    expect(retried.stdout).toContain(`retry requested: run ${runId} (was failed)`);
    expect(retried.stdout).toMatch(/run succeeded in/);

    // Retrying a succeeded run: the API's 409, exit 1.
    const conflict = await baton(['runs', 'retry', runId]);
    exits(conflict, 1);
    expect(conflict.stderr).toMatch(/error: run .* is succeeded; only .* runs can be retried/);
    expect(conflict.stderr).toContain('(HTTP 409)');
  });

  it('runs cancel stops a running run', async () => {
    const started = await baton(['runs', 'start', 'cli-hello', '--input', '{"name":"Slow","ms":20000}']);
    const runId = started.stdout.trim();
    await engine.waitForRun(runId, ['running']);
    const cancelled = await baton(['runs', 'cancel', runId, '--watch', '--interval', '100']);
    exits(cancelled, 0);
    expect(cancelled.stdout).toContain(`cancellation requested: run ${runId}`);
    expect(cancelled.stdout).toMatch(/run cancelled/);
    // Watching it afterwards: it did not succeed.
    const watched = await baton(['runs', 'get', runId, '--watch']);
    exits(watched, 2);
  });

  it('runs logs prints what the handlers logged, by step, and --follow ends with the run', async () => {
    const started = await baton(['runs', 'start', 'cli-hello', '--input', '{"name":"Logs","ms":300}']);
    const runId = started.stdout.trim();
    const followed = await baton(['runs', 'logs', runId, '--follow', '--interval', '100']);
    exits(followed, 0);
    const lines = followed.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\S+Z {2}INFO +greet {2}greeting \{"name":"Logs"\}$/);
    expect(lines[1]).toMatch(/shout {2}greeting \{"name":"hello Logs"\}$/);

    const one = await baton(['--json', 'runs', 'logs', runId, '--step', 'shout']);
    const entries = one.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(entries).toEqual([expect.objectContaining({ stepId: 'shout', message: 'greeting', level: 'info' })]);
  });

  it('events emit publishes an event and prints the runs it started', async () => {
    const res = await baton(['events', 'emit', 'cli.greet', '--payload', '{"name":"Eve"}']);
    exits(res, 0);
    const [head, runId] = res.stdout.trim().split('\n');
    expect(head).toMatch(/^event [0-9a-f-]{36}: 1 run started$/);
    expect(runId).toMatch(UUID);
    expect((await engine.waitForRun(runId)).status).toBe('succeeded');

    const refused = await baton(['events', 'emit', 'cli.greet', '--payload', '{"who":1}']);
    exits(refused, 0);
    expect(refused.stdout).toContain(': 0 runs started');
    expect(refused.stderr).toContain('warning: cli-hello refused the payload');
  });

  it('prints the API error message for a 404, with its code, and exits 1', async () => {
    const missing = '00000000-0000-4000-8000-000000000000';
    const res = await baton(['runs', 'get', missing]);
    exits(res, 1);
    expect(res.stdout).toBe('');
    expect(res.stderr).toBe(`error: run '${missing}' not found\n  NOT_FOUND (HTTP 404)\n`);

    const json = await baton(['--json', 'runs', 'get', missing]);
    exits(json, 1);
    expect(JSON.parse(json.stderr)).toEqual({
      error: { code: 'NOT_FOUND', message: `run '${missing}' not found` },
      status: 404,
    });

    const unknownWorkflow = await baton(['runs', 'start', 'no-such-workflow']);
    exits(unknownWorkflow, 1);
    expect(unknownWorkflow.stderr).toContain('(HTTP 404)');
  });

  it('prints validation details by path, and refuses bad --input locally', async () => {
    const res = await baton(['runs', 'start', 'cli-hello', '--input', '{"name":5}']);
    exits(res, 1);
    expect(res.stderr).toMatch(/^error: .*\n {2}\w+ \(HTTP 400\)\n {2}- .*name.*/);

    const bad = await baton(['runs', 'start', 'cli-hello', '--input', '{name}']);
    exits(bad, 1);
    expect(bad.stderr).toMatch(/^error: --input is not valid JSON/);
  });

  it('runs start --tag tags the run; runs list --tag filters by tags; runs get shows them', async () => {
    const started = await baton([
      'runs',
      'start',
      'cli-hello',
      '--input',
      '{"name":"Tagged"}',
      '--tag',
      'customer=cust-cli',
      '--tag',
      'tier=gold',
    ]);
    exits(started, 0);
    const runId = started.stdout.trim();
    await baton(['runs', 'start', 'cli-hello', '--input', '{"name":"Other"}', '--tag', 'customer=cust-cli']);
    const listed = await baton(['runs', 'list', '--tag', 'customer=cust-cli', '--tag', 'tier=gold']);
    exits(listed, 0);
    expect(listed.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^${runId} .*  customer=cust-cli tier=gold$`)),
    ]);
    const shown = await baton(['runs', 'get', runId]);
    expect(shown.stdout).toContain('  tags customer=cust-cli tier=gold\n');
    const bad = await baton(['runs', 'list', '--tag', 'no-equals']);
    exits(bad, 1);
    expect(bad.stderr).toMatch(/key=value/);
  });

  it('functions pause, list and resume a function', async () => {
    const paused = await baton(['functions', 'pause', 'cli-greet', '--reason', 'upstream down']);
    exits(paused, 0);
    expect(paused.stdout).toMatch(/^cli-greet: paused since \S+ \(upstream down\)\n$/);
    expect(await engine.coordinator.functionQueue('cli-greet').isPaused()).toBe(true);

    const listed = await baton(['functions', 'list']);
    exits(listed, 0);
    expect(listed.stdout).toMatch(
      /^cli-greet {2}PAUSED {2}waiting \d+, active \d+, workers \d+ {2}\(upstream down\)$/m,
    );
    const json = await baton(['--json', 'functions', 'list']);
    expect(JSON.parse(json.stdout).functions).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'cli-greet', paused: true })]),
    );

    const resumed = await baton(['functions', 'resume', 'cli-greet']);
    exits(resumed, 0);
    expect(resumed.stdout).toBe('cli-greet: running\n');
    expect(await engine.coordinator.functionQueue('cli-greet').isPaused()).toBe(false);

    const unknown = await baton(['functions', 'pause', 'no-such-fn']);
    exits(unknown, 1);
    expect(unknown.stderr).toContain("function 'no-such-fn' not found");
  });

  it('runs bulk-retry paces a re-drive, operations get shows it; runs fork re-runs from a step', async () => {
    const started = await baton(['runs', 'start', 'cli-hello', '--input', '{"name":"nobody"}', '--tag', 'batch=cli']);
    exits(started, 0);
    const runId = started.stdout.trim();
    expect((await engine.waitForRun(runId)).status).toBe('failed');

    const dry = await baton(['runs', 'bulk-retry', '--workflow', 'cli-hello', '--tag', 'batch=cli', '--dry-run']);
    exits(dry, 0);
    expect(dry.stdout.trim()).toBe('dry run: 1 run match');
    const empty = await baton(['runs', 'bulk-cancel']);
    exits(empty, 1);
    expect(empty.stderr).toMatch(/filter must name at least a workflow or a status/);

    const retried = await baton([
      'runs',
      'bulk-retry',
      '--status',
      'failed',
      '--tag',
      'batch=cli',
      '--input',
      '{"name":"Fixed","ms":0}',
      '--rate',
      '5',
      '--watch',
      '--interval',
      '100',
    ]);
    exits(retried, 0);
    const [head] = retried.stdout.trim().split('\n');
    const operationId = /^bulk retry (\S+): 1 runs matched$/.exec(head)?.[1] ?? '';
    expect(operationId).toMatch(UUID);
    expect(retried.stdout).toMatch(/succeeded\s+bulk retry\s+1\/1 done, 0 skipped, 0 failed, 0 remaining {2}5\/s/);
    expect((await engine.waitForRun(runId, ['succeeded'])).output).toBe('hello hello Fixed');
    const shown = await baton(['operations', 'get', operationId]);
    exits(shown, 0);
    expect(shown.stdout).toContain('1/1 done');
    const listed = await baton(['operations', 'list']);
    expect(listed.stdout).toContain(operationId);

    const forked = await baton(['runs', 'fork', runId, '--from', 'shout', '--watch', '--interval', '100']);
    exits(forked, 0);
    const forkId = forked.stdout.trim().split('\n')[0];
    expect(forkId).toMatch(UUID);
    expect(forked.stderr).toContain('kept: greet; runs again: shout');
    const fork = await baton(['runs', 'get', forkId]);
    expect(fork.stdout).toContain(`  forked from run ${runId}\n`);
  });

  it('sends BATON_API_KEY as a bearer token', async () => {
    const without = await baton(['workflows', 'list'], { env: { BATON_URL: keyedUrl } });
    exits(without, 1);
    expect(without.stderr).toContain('error: missing bearer token');
    expect(without.stderr).toContain('UNAUTHORIZED (HTTP 401)');
    const withKey = await baton(['workflows', 'list'], { env: { BATON_URL: keyedUrl, BATON_API_KEY: 'cli-s3cret' } });
    exits(withKey, 0);
    expect(withKey.stdout).toContain('cli-hello');
  });

  it('says where it tried when the gateway cannot be reached', async () => {
    const res = await baton(['runs', 'get', 'x'], { env: { BATON_URL: 'http://127.0.0.1:9' } });
    exits(res, 1);
    expect(res.stderr).toMatch(
      /^error: cannot reach the Baton gateway at http:\/\/127\.0\.0\.1:9 \(.+\); set BATON_URL\n$/,
    );
  });
});
