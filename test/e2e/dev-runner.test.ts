import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort, withDatabase } from '../support/env';
import { SMTPServer } from 'smtp-server';
import { simpleParser, type ParsedMail } from 'mailparser';
import { Redis } from 'ioredis';
import { deleteKeysWithPrefix, redisOptionsFrom } from '@baton/engine';

/**
 * The whole system as processes: `node scripts/dev.js` against a fresh database, a Redis key prefix
 * of its own and an SMTP server of the test's own; the seed's invoice run must succeed end to end,
 * and SIGINT must stop every process the runner started.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const READY_TIMEOUT_MS = 120_000;
const RUN_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

interface RunStep {
  id: string;
  function: string;
  status: string;
  attempts: number;
  startedAt: string | null;
  finishedAt: string | null;
  output?: Record<string, unknown> | null;
}
interface Run {
  id: string;
  status: string;
  steps: RunStep[];
}

/**
 * Polls `check` until it returns a value; throws `what()` after `timeoutMs`. An error thrown by
 * `check` ends the wait at once (a dead process or a failed run needs no more polling).
 */
async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await sleep(250);
  }
  throw new Error(what());
}

// ---- processes -------------------------------------------------------------------------------

/** Linux: a process counts as gone once it has no /proc entry or is a zombie awaiting its reaper. */
function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Every descendant of `root` with its command line, from /proc. */
function descendants(root: number): { pid: number; cmdline: string }[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // exited while we looked
    }
  }
  const found: { pid: number; cmdline: string }[] = [];
  const queue = [root];
  while (queue.length) {
    for (const pid of children.get(queue.shift()!) ?? []) {
      let cmdline = '';
      try {
        cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        // exited while we looked
      }
      found.push({ pid, cmdline });
      queue.push(pid);
    }
  }
  return found;
}

interface DevProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  tail(lines?: number): string;
}

function startDev(env: Record<string, string>): DevProcess {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, NO_COLOR: '1' };
  // As a developer would run it: no jest flags, no colours, no Redis settings besides REDIS_URL.
  for (const key of ['NODE_OPTIONS', 'FORCE_COLOR', 'REDIS_HOST', 'REDIS_PORT']) delete childEnv[key];
  const child = spawn(process.execPath, ['scripts/dev.js'], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const collect = (line: string) => {
    output.push(line);
    if (output.length > 5_000) output.shift();
    // E2E_VERBOSE=1 shows the whole system's output while the test runs.
    if (process.env.E2E_VERBOSE) process.stdout.write(`${line}\n`);
  };
  readline.createInterface({ input: child.stdout! }).on('line', collect);
  readline.createInterface({ input: child.stderr! }).on('line', collect);
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      running = false;
      resolve({ code, signal });
    }),
  );
  return {
    child,
    exited,
    isRunning: () => running,
    tail: (lines = 60) => output.slice(-lines).join('\n'),
  };
}

// ---- mail ------------------------------------------------------------------------------------

interface MailCatcher {
  port: number;
  mails: { recipients: string[]; mail: ParsedMail }[];
  close(): Promise<void>;
}

async function startMailCatcher(): Promise<MailCatcher> {
  const mails: MailCatcher['mails'] = [];
  const server = new SMTPServer({
    authOptional: true,
    // Plain SMTP like a mail catcher: no self-signed STARTTLS for the sender to trip over.
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      simpleParser(stream).then(
        (mail) => {
          mails.push({ recipients: session.envelope.rcptTo.map((r) => r.address), mail });
          callback();
        },
        (err: Error) => callback(err),
      );
    },
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { port, mails, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

// ---- the test ----------------------------------------------------------------------------------

describe('npm run dev: the whole system as processes', () => {
  const id = crypto.randomBytes(4).toString('hex');
  const database = `baton_e2e_${id}`;
  const queuePrefix = `baton-e2e-${id}`;
  let dev: DevProcess | undefined;
  let mail: MailCatcher | undefined;
  let base = '';

  beforeAll(async () => {
    mail = await startMailCatcher();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const started = startDev({
      DATABASE_URL: withDatabase(SERVER_URL, database),
      REDIS_URL,
      BATON_QUEUE_PREFIX: queuePrefix,
      PORT: String(port),
      SMTP_URL: `smtp://127.0.0.1:${mail.port}`,
      LOG_LEVEL: 'info',
      // The orders-feed test's feed is a server of this test's own, on the loopback address.
      HTTP_REQUEST_ALLOWED_HOSTS: '127.0.0.1',
    });
    dev = started;
    await waitFor(
      async () => {
        if (!started.isRunning()) {
          const { code, signal } = await started.exited;
          throw new Error(
            `scripts/dev.js exited (${signal ?? `code ${code}`}) before ${base}/readyz answered 200:\n${started.tail()}`,
          );
        }
        const res = await fetch(`${base}/readyz`).catch(() => undefined);
        return res?.status === 200 ? true : undefined;
      },
      READY_TIMEOUT_MS,
      () => `${base}/readyz did not answer 200 within ${READY_TIMEOUT_MS / 1000}s; dev.js output:\n${started.tail()}`,
    );
  }, READY_TIMEOUT_MS + 30_000);

  afterAll(async () => {
    if (dev?.isRunning()) {
      for (const { pid } of descendants(dev.child.pid!)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      dev.child.kill('SIGKILL');
      await dev.exited;
    }
    await mail?.close();
    const admin = new pg.Client({ connectionString: withDatabase(SERVER_URL, 'postgres') });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${admin.escapeIdentifier(database)} WITH (FORCE)`);
    } finally {
      await admin.end();
    }
    // One connection attempt, no retries: an unreachable Redis must not hang the cleanup.
    const redis = new Redis({
      ...redisOptionsFrom({ REDIS_URL, REDIS_HOST: '127.0.0.1', REDIS_PORT: 6379 }),
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
    });
    redis.on('error', () => undefined);
    try {
      await redis.connect();
      await deleteKeysWithPrefix(redis, queuePrefix);
    } finally {
      redis.disconnect();
    }
  }, 60_000);

  it(
    'runs the seed invoice workflow: 4 steps, a PDF document and an e-mail with the PDF to the customer',
    async () => {
      const start = await fetch(`${base}/invoice/start`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ customerId: 'cust-01' }),
      });
      expect(start.status).toBe(202);
      const { runId } = (await start.json()) as { runId: string };
      expect(runId).toEqual(expect.any(String));

      let last: Run | undefined;
      const run = await waitFor(
        async () => {
          const res = await fetch(`${base}/v1/runs/${runId}`);
          if (res.status !== 200) throw new Error(`GET /v1/runs/${runId}: ${res.status} ${await res.text()}`);
          last = (await res.json()) as Run;
          if (['failed', 'compensated', 'compensation_failed', 'cancelled'].includes(last.status)) {
            throw new Error(`run ended ${last.status}: ${JSON.stringify(last, null, 2)}`);
          }
          return last.status === 'succeeded' ? last : undefined;
        },
        RUN_TIMEOUT_MS,
        () =>
          `run ${runId} not succeeded after ${RUN_TIMEOUT_MS / 1000}s: ${JSON.stringify(last, null, 2)}\n${dev!.tail()}`,
      );

      expect(run.steps).toHaveLength(4);
      for (const step of run.steps) {
        expect(step).toMatchObject({ status: 'succeeded', attempts: expect.any(Number) });
        expect(step.attempts).toBeGreaterThanOrEqual(1);
        expect(Number.isNaN(Date.parse(step.startedAt ?? ''))).toBe(false);
        expect(Number.isNaN(Date.parse(step.finishedAt ?? ''))).toBe(false);
      }

      const pdfStep = run.steps.find((s) => s.function === 'generate-pdf');
      const documentId = pdfStep?.output?.documentId;
      expect(documentId).toEqual(expect.any(String));
      const doc = await fetch(`${base}/v1/documents/${String(documentId)}`);
      expect(doc.status).toBe(200);
      expect(doc.headers.get('content-type')).toMatch(/^application\/pdf/);
      expect(
        Buffer.from(await doc.arrayBuffer())
          .subarray(0, 4)
          .toString('latin1'),
      ).toBe('%PDF');

      const sent = await waitFor(
        async () => mail!.mails.find((m) => m.recipients.includes('ada@example.com')),
        15_000,
        () => `no e-mail to ada@example.com; received: ${JSON.stringify(mail!.mails.map((m) => m.recipients))}`,
      );
      const pdf = sent.mail.attachments.find((a) => a.contentType === 'application/pdf');
      expect(pdf).toBeDefined();
      expect(pdf!.content.subarray(0, 4).toString('latin1')).toBe('%PDF');
    },
    RUN_TIMEOUT_MS + 30_000,
  );

  it(
    'runs orders-feed: a forEach of child invoice runs, linked both ways, ending with what was invoiced',
    async () => {
      const feed = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            orders: [
              { id: 'e1', customerId: 'cust-02', status: 'open' },
              { id: 'e2', customerId: 'cust-03', status: 'open' },
              { id: 'e3', customerId: 'cust-04', status: 'shipped' },
            ],
          }),
        );
      });
      await new Promise<void>((resolve) => feed.listen(0, '127.0.0.1', resolve));
      try {
        const feedUrl = `http://127.0.0.1:${(feed.address() as AddressInfo).port}/orders.json`;
        const start = await fetch(`${base}/v1/workflows/orders-feed/runs`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ input: { feedUrl } }),
        });
        expect(start.status).toBe(202);
        const { runId } = (await start.json()) as { runId: string };
        let last: (Run & { output?: Record<string, unknown> }) | undefined;
        const run = await waitFor(
          async () => {
            const res = await fetch(`${base}/v1/runs/${runId}`);
            last = (await res.json()) as Run & { output?: Record<string, unknown> };
            if (['failed', 'compensated', 'compensation_failed', 'cancelled'].includes(last.status)) {
              throw new Error(`run ended ${last.status}: ${JSON.stringify(last, null, 2)}`);
            }
            return last.status === 'succeeded' ? last : undefined;
          },
          RUN_TIMEOUT_MS,
          () => `orders-feed run not succeeded: ${JSON.stringify(last, null, 2)}\n${dev!.tail()}`,
        );
        expect(run.output).toMatchObject({ customers: ['cust-02', 'cust-03'], invoiceCount: 2 });
        const invoices = run.steps.find((s) => s.id === 'invoices') as RunStep & {
          fanout?: { total: number; succeeded: number };
          items?: { index: number; childRunId?: string }[];
        };
        expect(invoices.fanout).toMatchObject({ total: 2, succeeded: 2 });
        const children = (await (await fetch(`${base}/v1/runs?parentRunId=${runId}`)).json()) as {
          runs: { id: string; workflow: string; status: string; parentRunId: string }[];
        };
        expect(children.runs.map((c) => [c.workflow, c.status, c.parentRunId])).toEqual([
          ['invoice', 'succeeded', runId],
          ['invoice', 'succeeded', runId],
        ]);
        expect(invoices.items?.map((i) => i.childRunId).sort()).toEqual(children.runs.map((c) => c.id).sort());
        // Each child e-mailed its customer once.
        for (const to of ['grace@example.com', 'alan@example.com']) {
          await waitFor(
            async () => mail!.mails.find((m) => m.recipients.includes(to)),
            15_000,
            () => `no e-mail to ${to}; received: ${JSON.stringify(mail!.mails.map((m) => m.recipients))}`,
          );
        }
      } finally {
        await new Promise((resolve) => feed.close(resolve));
      }
    },
    RUN_TIMEOUT_MS + 30_000,
  );

  it(
    `stops on SIGINT within ${STOP_TIMEOUT_MS / 1000}s and leaves no process behind`,
    async () => {
      const child = dev!.child;
      const processes = descendants(child.pid!);
      // One process per deployable: gateway, coordinator and every function folder.
      const functions = fs
        .readdirSync(path.join(ROOT, 'functions'))
        .filter((name) => fs.existsSync(path.join(ROOT, 'functions', name, 'package.json')));
      expect(processes.filter((p) => p.cmdline.includes('dist/main.js'))).toHaveLength(2 + functions.length);

      child.kill('SIGINT');
      const exit = await Promise.race([dev!.exited, sleep(STOP_TIMEOUT_MS, undefined, { ref: false })]);
      if (!exit) throw new Error(`dev.js still running ${STOP_TIMEOUT_MS / 1000}s after SIGINT:\n${dev!.tail()}`);
      expect(exit.code).toBe(0);

      // dev.js waits for its children before exiting; allow a moment for the kernel's bookkeeping.
      const leftover = () => processes.filter((p) => isAlive(p.pid));
      for (let i = 0; i < 20 && leftover().length; i++) await sleep(100);
      expect(leftover()).toEqual([]);
    },
    STOP_TIMEOUT_MS + 15_000,
  );
});
