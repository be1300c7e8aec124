import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loadDefinitionsFromDir } from '@baton/engine';
import { bundleFunction, IMAGE_NODE_FLAGS, writeCodeCache } from '@baton/sdk/dist/bundle';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, freePort, waitFor, type TestEnv } from '../support/env';
import { pdfText, startSmtp, type TestSmtp } from '../support/mail';

/**
 * The function images run each function as one esbuild bundle (the SDK's bundleFunction), with the
 * flags the images start it with. This runs the invoice workflow end to end on the four functions
 * bundled exactly so, each its own process against real Redis, PostgreSQL and an SMTP server, with a
 * coordinator: what a bundle breaks (a package reading its own files, a name a library compares, an
 * optional import) fails here rather than in a cluster. generate-pdf keeps pdfkit outside its bundle
 * (`baton.external`), so that path is exercised too.
 */

const ROOT = path.resolve(__dirname, '../..');
const INVOICE_FUNCTIONS = ['fetch-orders', 'create-invoice', 'generate-pdf', 'send-email', 'void-invoice'];

/** What `start.js --check-code-cache` prints: accepted, rejected or none. */
function checkCodeCache(launcher: string, flags: readonly string[], cwd: string): string {
  return execFileSync(process.execPath, [...flags, launcher, '--check-code-cache'], { cwd })
    .toString()
    .trim();
}

describe('bundled functions (what the function images run)', () => {
  let env: TestEnv;
  let engine: Engine;
  let smtp: TestSmtp;
  const processes: { name: string; child: ChildProcess; output: string }[] = [];
  const bundles: { name: string; outfile: string; external: string[]; launcher: string }[] = [];
  /** What `start.js --check-code-cache` said of each function's cache, with the image's flags and without. */
  const codeCache: Record<string, { imageFlags: string; otherFlags: string }> = {};

  beforeAll(async () => {
    env = await createTestEnv('function_bundle');
    await loadDefinitionsFromDir(env.pool, path.join(ROOT, 'workflows'));
    smtp = await startSmtp();
    // The coordinator and reconciler only: every worker is a bundled process below.
    engine = await startEngine(env, []);
    for (const name of INVOICE_FUNCTIONS) {
      const dir = path.join(ROOT, 'functions', name);
      const bundle = await bundleFunction(dir, path.join(dir, 'bundle', 'main.js'));
      bundles.push({ name, ...bundle });
      // As the image build does (Dockerfile): the code cache, written by the CMD's node and flags.
      const written = writeCodeCache(bundle.launcher, {
        cwd: dir,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, BATON_CODE_CACHE_AFTER_MS: '500' },
      });
      codeCache[name] = {
        imageFlags: checkCodeCache(bundle.launcher, IMAGE_NODE_FLAGS, dir),
        otherFlags: checkCodeCache(bundle.launcher, [], dir),
      };
      expect(written).toBe('');
      const metricsPort = await freePort();
      const child = spawn(process.execPath, [...IMAGE_NODE_FLAGS, bundle.launcher], {
        cwd: dir,
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          REDIS_HOST: env.config.redis.host,
          REDIS_PORT: String(env.config.redis.port),
          BATON_QUEUE_PREFIX: env.config.queuePrefix,
          DATABASE_URL: env.databaseUrl,
          SMTP_URL: `smtp://127.0.0.1:${smtp.port}`,
          METRICS_PORT: String(metricsPort),
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const proc = { name, child, output: '' };
      child.stdout?.on('data', (d) => (proc.output += d));
      child.stderr?.on('data', (d) => (proc.output += d));
      processes.push(proc);
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}: ${proc.output}`);
          return (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok || undefined;
        },
        30_000,
        `bundled ${name} to answer /healthz`,
      );
    }
  }, 180_000);

  afterAll(async () => {
    for (const { child } of processes) if (child.exitCode === null) child.kill('SIGKILL');
    await engine?.close();
    await smtp?.close();
    await env?.cleanup();
    for (const { outfile } of bundles) fs.rmSync(path.dirname(outfile), { recursive: true, force: true });
  });

  it('starts each bundle through start.js with the V8 code cache its image build writes', () => {
    for (const { name, outfile } of bundles) {
      expect(fs.statSync(`${outfile}.cache`).size).toBeGreaterThan(0);
      // Taken with the flags it was written with; rejected with others, and then compiled as without.
      expect([name, codeCache[name]]).toEqual([name, { imageFlags: 'accepted', otherFlags: 'rejected' }]);
    }
  });

  it('bundles every package but the ones a function keeps outside', () => {
    const pdf = bundles.find((b) => b.name === 'generate-pdf');
    expect(pdf?.external).toEqual(['pdfkit']);
    const text = fs.readFileSync(pdf!.outfile, 'utf8');
    // pdfkit is required at run time, not inlined; bullmq (the SDK's) is inlined.
    expect(text).toMatch(/require\("pdfkit"\)/);
    expect(text).not.toMatch(/require\("bullmq"\)/);
    const orders = fs.readFileSync(bundles.find((b) => b.name === 'fetch-orders')!.outfile, 'utf8');
    expect(orders).not.toMatch(/require\("(bullmq|ioredis|pg|zod|pino|prom-client)"\)/);
  });

  it('runs the invoice workflow end to end: invoice row, PDF bytes, an e-mail carrying it', async () => {
    const runId = await engine.start('invoice', { customerId: 'cust-01' });
    const run = await engine.waitForRun(runId);
    expect({ status: run.status, error: run.error }).toEqual({ status: 'succeeded', error: null });
    const invoice = await env.pool.query('SELECT number, total_cents FROM invoices WHERE run_id = $1', [runId]);
    expect(invoice.rows).toEqual([{ number: expect.any(String), total_cents: 123598 }]);
    // send-email succeeded before the run did: the message is already in the mailbox.
    const mail = smtp.received.find((m) => m.envelope.to.includes('ada@example.com'));
    expect(mail?.mail.subject).toContain(invoice.rows[0].number);
    const attachment = mail!.mail.attachments.find((a) => a.contentType === 'application/pdf');
    expect(attachment?.content.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    const text = await pdfText(attachment!.content);
    expect(text).toContain('Ada Lovelace Ltd');
    expect(text).toContain('1,235.98');
  });

  it('fails a run on a bundled function with its own error code, not retried', async () => {
    const runId = await engine.start('invoice', { customerId: 'cust-99' });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({
      stepId: 'fetchOrders',
      code: 'CUSTOMER_NOT_FOUND',
      nonRetryable: true,
      attempt: 1,
    });
  });

  it('stops every bundled process cleanly on SIGTERM', async () => {
    const codes = await Promise.all(
      processes.map(
        ({ child }) =>
          new Promise<number | null>((resolve) => {
            child.once('exit', (code) => resolve(code));
            child.kill('SIGTERM');
          }),
      ),
    );
    expect(codes).toEqual(processes.map(() => 0));
  });
});
