import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Express } from 'express';
import { chromium, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import { z } from 'zod';
import { NonRetryableError } from '@baton/workflow';
import { createLogger, defineFunction, saveDefinition } from '@baton/engine';
import { createApp } from '../../services/gateway/src/app';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * The dashboard in headless Chromium (the Debian package, driven by playwright-core) over the real
 * gateway and engine: the runs list, a failed run's summary and timeline, retry and cancel, the
 * workflows and functions pages, the API-key form, and Bull Board. Every page must load without a
 * console error; screenshots land in test-results/dashboard/.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.join(__dirname, '..', '..', 'test-results', 'dashboard');
const API_KEY = 'browser-test-key';

/** What the synthetic functions do; tests flip these. */
const behaviour = { declineCards: true };

const fetchData = defineFunction({
  name: 'fetch-data',
  input: z.object({ customer: z.string() }),
  handler: async ({ customer }, ctx) => {
    ctx.log.info('fetched the orders', { customer, orders: 3 });
    return { customer, orders: 3 };
  },
});

const releaseData = defineFunction({
  name: 'release-data',
  input: z.object({ customer: z.string() }),
  handler: async ({ customer }, ctx) => {
    ctx.log.warn('released the reservation', { customer });
    return { released: true };
  },
});

/** Attempt 1 times out (retryable), later attempts are declined for good while declineCards is set. */
const chargeCard = defineFunction({
  name: 'charge-card',
  input: z.object({ amount: z.number() }),
  handler: async ({ amount }, ctx) => {
    if (behaviour.declineCards) {
      if (ctx.attempt === 1) {
        ctx.log.info('charging', { amount });
        throw new Error('payment gateway timed out');
      }
      ctx.log.error('card declined', { amount });
      throw new NonRetryableError('CARD_DECLINED', 'card ending 4242 was declined by the issuer');
    }
    ctx.log.info('charged', { amount });
    return { charged: amount };
  },
});

/** Runs until cancelled (or 30 s). */
const slow = defineFunction({
  name: 'slow-job',
  input: z.object({}),
  handler: async (_input, ctx) => {
    await new Promise<void>((resolve) => {
      // Until cancelled: the cancel test comes after several others, which take longer than 30 s
      // on a loaded machine (the run had succeeded by then). Bounded, so a failed cancel test
      // cannot hang the teardown.
      const timer = setTimeout(resolve, 180_000);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (ctx.signal.aborted) throw ctx.signal.reason;
    return {};
  },
});

const documentId = crypto.randomUUID();

/** Browser globals used inside page.evaluate callbacks (test/tsconfig has no DOM lib). */
declare const document: any;
declare const sessionStorage: any;

const makeDocument = defineFunction({
  name: 'make-document',
  input: z.object({}),
  handler: async () => ({ invoiceNumber: 'INV-TEST-0001', documentUrl: `/v1/documents/${documentId}` }),
});

const quick = { attempts: 1 };

/** Markup in run data, which the dashboard must show as text. */
const PROBE = '<img src=x onerror="document.title=1"><b>bold</b>';

async function listen(app: Express): Promise<{ server: Server; url: string }> {
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function close(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Console errors and page errors of a page; `allow` lists expected ones (e.g. a 401 before the key). */
function watch(page: Page) {
  const problems: string[] = [];
  const allowed: RegExp[] = [];
  page.on('console', (msg: ConsoleMessage) => {
    if (msg.type() !== 'error') return;
    const text = `${msg.text()} (${msg.location().url})`;
    if (!allowed.some((re) => re.test(text))) problems.push(`console: ${text}`);
  });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  return {
    problems,
    allow(re: RegExp) {
      allowed.push(re);
    },
  };
}

describe('dashboard in headless Chromium', () => {
  let env: TestEnv;
  let engine: Engine;
  let open: { server: Server; url: string };
  let keyed: { server: Server; url: string };
  let context: BrowserContext;
  let page: Page;
  let watcher: ReturnType<typeof watch>;
  let profile: string;
  const external: string[] = [];
  const runs: Record<string, string> = {};

  const shot = async (name: string, p: Page = page) => {
    await p.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  };

  beforeAll(async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: the browser tests need the Debian package ` +
          '(apt-get update && apt-get install -y chromium; .ci/run installs it). Never `npx playwright install`.',
      );
    }
    fs.mkdirSync(SHOTS, { recursive: true });
    env = await createTestEnv('browser');
    engine = await startEngine(env, [fetchData, releaseData, chargeCard, slow, makeDocument], { bulkIntervalMs: 100 });
    const deps = {
      pool: env.pool,
      redis: env.redis,
      coordinator: engine.coordinatorQueue,
      logger: createLogger('test', 'silent'),
    };
    open = await listen(createApp({ ...deps, config: { ...env.config, port: 0, apiKeys: [], bodyLimit: '1mb' } }));
    keyed = await listen(
      createApp({ ...deps, config: { ...env.config, port: 0, apiKeys: [API_KEY], bodyLimit: '1mb' } }),
    );

    await saveDefinition(env.pool, {
      name: 'billing',
      description: 'Fetch the orders, then charge the card',
      input: { type: 'object', required: ['customer'], properties: { customer: { type: 'string' } } },
      tags: { customer: '{{ input.customer }}', team: 'billing' },
      steps: [
        { id: 'fetchOrders', function: 'fetch-data', input: { customer: '{{ input.customer }}' } },
        {
          id: 'charge',
          function: 'charge-card',
          retry: { attempts: 3, backoff: { type: 'fixed', delayMs: 100 } },
          input: { amount: 42 },
        },
      ],
    });
    await saveDefinition(env.pool, {
      name: 'booking',
      steps: [
        {
          id: 'reserve',
          function: 'fetch-data',
          input: { customer: '{{ input.customer }}' },
          compensate: { function: 'release-data', input: { customer: '{{ input.customer }}' } },
        },
        { id: 'pay', function: 'charge-card', retry: quick, input: { amount: 7 } },
      ],
    });
    await saveDefinition(env.pool, { name: 'long-job', steps: [{ id: 'wait', function: 'slow-job', retry: quick }] });
    await saveDefinition(env.pool, {
      name: 'paperwork',
      steps: [{ id: 'doc', function: 'make-document', retry: quick }],
      output: '{{ steps.doc.output }}',
    });
    await env.pool.query(
      `INSERT INTO documents (id, filename, content_type, size_bytes, content) VALUES ($1, 'INV-TEST-0001.pdf', 'application/pdf', 9, $2)`,
      [documentId, Buffer.from('%PDF-1.4\n')],
    );

    runs.succeeded = await engine.start('paperwork', {});
    runs.compensated = await engine.start('booking', { customer: 'cust-02' });
    // The note probes escaping: the run page shows it as text.
    runs.failed = await engine.start('billing', { customer: 'cust-01', note: PROBE });
    await Promise.all([
      engine.waitForRun(runs.succeeded, ['succeeded']),
      engine.waitForRun(runs.compensated, ['compensated']),
      engine.waitForRun(runs.failed, ['failed']),
    ]);
    runs.running = await engine.start('long-job', {});
    await engine.waitForRun(runs.running, ['running']);

    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 860 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // Nothing but this machine: no name resolves except the loopback address.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      ],
    });
    // Nothing leaves the machine: any request elsewhere (Bull Board asks for web fonts) is answered
    // here, empty, and recorded.
    await context.route('**/*', async (route) => {
      const url = new URL(route.request().url());
      if (url.hostname === '127.0.0.1') return route.continue();
      external.push(url.href);
      return route.fulfill({ status: 200, contentType: 'text/css', body: '' });
    });
    page = context.pages()[0] ?? (await context.newPage());
    watcher = watch(page);
    page.on('dialog', (dialog) => void dialog.accept());
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
    await close(open?.server);
    await close(keyed?.server);
    await engine?.close();
    await env?.cleanup();
  });

  afterEach(() => {
    // Every step of the journey must be free of console errors and uncaught exceptions.
    const problems = watcher ? watcher.problems.splice(0) : [];
    expect(problems).toEqual([]);
  });

  it('lists the runs newest first with their status and failure, and updates live', async () => {
    await page.goto(`${open.url}/`);
    const rows = page.locator('.runs-table tbody tr');
    await rows.nth(3).waitFor();
    expect(await rows.count()).toBe(4);
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run-id')))).toEqual([
      runs.running,
      runs.failed,
      runs.compensated,
      runs.succeeded,
    ]);
    const failed = page.locator(`tr[data-run-id="${runs.failed}"]`);
    await expect(failed.locator('.badge').textContent()).resolves.toBe('failed');
    await expect(failed.locator('td.failure').textContent()).resolves.toContain('CARD_DECLINED');
    // Relative time shown, the ISO instant in the title.
    const created = failed.locator('time');
    expect(await created.getAttribute('title')).toMatch(/^\d{4}-\d\d-\d\dT/);
    await shot('01-runs');

    // A run started now shows up without a reload (polling).
    const fresh = await engine.start('paperwork', {});
    await page.locator(`tr[data-run-id="${fresh}"]`).waitFor({ timeout: 10_000 });
    await page.locator(`tr[data-run-id="${fresh}"] .badge`, { hasText: 'succeeded' }).waitFor({ timeout: 10_000 });
  });

  it('filters by status and workflow, in the URL too', async () => {
    await page.selectOption('#filter-status', 'failed');
    await page.waitForFunction(() => {
      const statuses = [...document.querySelectorAll('.runs-table tbody tr')].map((tr: any) => tr.dataset.status);
      return statuses.length === 1 && statuses[0] === 'failed';
    });
    expect(new URL(page.url()).searchParams.get('status')).toBe('failed');
    await page.selectOption('#filter-status', '');
    await page.selectOption('#filter-workflow', 'booking');
    await page.waitForFunction((id) => {
      const ids = [...document.querySelectorAll('.runs-table tbody tr')].map((tr: any) => tr.dataset.runId);
      return ids.length === 1 && ids[0] === id;
    }, runs.compensated);
    expect(new URL(page.url()).search).toBe('?workflow=booking');
    await page.selectOption('#filter-workflow', '');
    await page.locator(`tr[data-run-id="${runs.failed}"]`).waitFor();
  });

  it('shows tags as chips on the list and the run page; a chip filters by its tag, in the URL too', async () => {
    const rowIds = () =>
      page.locator('.runs-table tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run-id')));
    const chip = page.locator(`tr[data-run-id="${runs.failed}"] .tag-chip[data-tag="customer:cust-01"]`);
    await chip.waitFor();
    expect(await page.locator(`tr[data-run-id="${runs.compensated}"] .tag-chip`).count()).toBe(0);
    await chip.click();
    await page.waitForFunction((id) => {
      const ids = [...document.querySelectorAll('.runs-table tbody tr')].map((tr: any) => tr.dataset.runId);
      return ids.length === 1 && ids[0] === id;
    }, runs.failed);
    expect(new URL(page.url()).searchParams.getAll('tag')).toEqual(['customer:cust-01']);
    await shot('01b-runs-by-tag');
    // The URL alone filters (a reload, a shared link); a second tag must match too.
    await page.goto(`${open.url}/?tag=customer:cust-01&tag=team:other`);
    await page.locator('.empty:not([hidden])').waitFor();
    expect(await rowIds()).toEqual([]);
    // The run page shows them; a chip there links to the filtered list.
    await page.goto(`${open.url}/runs/${runs.failed}`);
    const onRun = page.locator('#run-tags .tag-chip');
    await onRun.first().waitFor();
    expect(await onRun.evaluateAll((els) => els.map((e) => e.getAttribute('data-tag')))).toEqual([
      'customer:cust-01',
      'team:billing',
    ]);
    await onRun.first().click();
    await page.waitForURL(/\?tag=customer%3Acust-01$/);
    await page.locator(`tr[data-run-id="${runs.failed}"]`).waitFor();
    // Removing the filter chip lists every run again.
    await page.click('#filter-tags .tag-chip');
    await page.locator(`tr[data-run-id="${runs.compensated}"]`).waitFor();
    expect(new URL(page.url()).search).toBe('');
  });

  it('shows why a failed run failed, with its timeline, attempts and logs', async () => {
    await page.click(`tr[data-run-id="${runs.failed}"] a.mono`);
    await page.waitForURL(`**/runs/${runs.failed}`);
    const why = page.locator('#why');
    await why.waitFor();
    const text = await why.innerText();
    expect(text).toContain('Why it failed');
    expect(text).toContain('charge');
    expect(text).toContain('charge-card');
    expect(text).toContain('attempt 2');
    expect(text).toContain('non-retryable');
    expect(text).toContain('CARD_DECLINED');
    expect(text).toContain('card ending 4242 was declined by the issuer');
    // Data is text, never markup.
    expect(await page.locator('.io pre.json').first().innerText()).toContain(JSON.stringify(PROBE).slice(1, -1));
    expect(await page.locator('main img, main b').count()).toBe(0);

    const items = page.locator('.timeline > li');
    expect(
      await items.evaluateAll((els) =>
        els.map((e) => `${e.getAttribute('data-step-id')}:${e.getAttribute('data-status')}`),
      ),
    ).toEqual(['fetchOrders:succeeded', 'charge:failed']);
    const charge = page.locator('.timeline > li[data-step-id="charge"]');
    await charge.locator('summary', { hasText: 'Attempts (2)' }).click();
    await expect(charge.locator('.attempts li').count()).resolves.toBe(2);
    expect(await charge.locator('.attempts li').first().innerText()).toContain('payment gateway timed out');
    expect(await page.locator('.logs-table').last().innerText()).toContain('card declined');
    expect(await page.locator('#retry').isVisible()).toBe(true);
    expect(await page.locator('#cancel').count()).toBe(0);
    await shot('02-run-failed');
    // The README's picture (docs/img/dashboard.png): the first screen of a failed run.
    await page.screenshot({ path: path.join(SHOTS, 'readme-run-failed.png') });
  });

  it('retries the failed run, which then succeeds', async () => {
    behaviour.declineCards = false;
    await page.click('#retry');
    await page.locator('.run-title .badge', { hasText: 'succeeded' }).waitFor({ timeout: 20_000 });
    expect(await page.locator('#why').count()).toBe(0);
    // The failed execution stays on record; fetchOrders (succeeded) did not run again.
    const items = await page
      .locator('.timeline > li')
      .evaluateAll((els) => els.map((e) => `${e.getAttribute('data-step-id')}:${e.getAttribute('data-status')}`));
    expect(items).toEqual(['fetchOrders:succeeded', 'charge:failed', 'charge:succeeded']);
    expect(await page.locator('.timeline > li.superseded .tag', { hasText: 'earlier execution' }).count()).toBe(1);
    await shot('03-run-retried');
  });

  it('shows compensations in the timeline of a compensated run', async () => {
    await page.goto(`${open.url}/runs/${runs.compensated}`);
    await page.locator('.timeline > li.tl-compensation').waitFor();
    const items = await page
      .locator('.timeline > li')
      .evaluateAll((els) =>
        els.map(
          (e) => `${e.getAttribute('data-kind')}:${e.getAttribute('data-step-id')}:${e.getAttribute('data-status')}`,
        ),
      );
    expect(items).toEqual(['step:reserve:compensated', 'step:pay:failed', 'compensation:reserve:succeeded']);
    expect(await page.locator('#why').innerText()).toContain('undone');
    await shot('04-run-compensated');
  });

  it('links the PDF of a run whose output has a documentUrl', async () => {
    await page.goto(`${open.url}/runs/${runs.succeeded}`);
    const link = page.locator('#document-link');
    await link.waitFor();
    expect(await link.getAttribute('href')).toBe(`/v1/documents/${documentId}`);
    const answer = await page.evaluate(async (href) => {
      const res = await fetch(href);
      return { status: res.status, type: res.headers.get('content-type') };
    }, `/v1/documents/${documentId}`);
    expect(answer).toEqual({ status: 200, type: 'application/pdf' });
  });

  it('cancels an active run', async () => {
    await page.goto(`${open.url}/runs/${runs.running}`);
    await page.locator('.run-title .badge', { hasText: 'running' }).waitFor();
    expect(await page.locator('#retry').count()).toBe(0);
    await page.click('#cancel'); // the confirm() dialog is accepted
    await page.locator('.run-title .badge', { hasText: 'cancelled' }).waitFor({ timeout: 20_000 });
    expect(await page.locator('#why').innerText()).toContain('CANCELLED');
    expect(await page.locator('#retry').isVisible()).toBe(true);
  });

  it('lists workflows with their versions and starts a run from the form', async () => {
    await page.goto(`${open.url}/workflows?name=billing`);
    await page.locator('.wf-list li[data-name="billing"].selected').waitFor();
    expect(await page.locator('.wf-list li').evaluateAll((els) => els.map((e) => e.getAttribute('data-name')))).toEqual(
      ['billing', 'booking', 'long-job', 'paperwork'],
    );
    await page.locator('.steps-table').waitFor();
    expect(await page.locator('.steps-table').innerText()).toContain('charge-card');
    expect(await page.locator('.versions [data-version]').count()).toBe(1);
    // The input starts from the schema's required fields.
    expect(JSON.parse(await page.locator('#run-input').inputValue())).toEqual({ customer: '' });
    await shot('05-workflows');

    await page.fill('#run-input', '{ not json');
    await page.click('#start-form button[type=submit]');
    await page.locator('#start-form .notice.error', { hasText: 'not valid JSON' }).waitFor();

    // An input the schema refuses is a 400 (which the browser logs): its details are shown.
    watcher.allow(/status of 400 .*\/v1\/workflows\/billing\/runs/);
    await page.fill('#run-input', '{"customer": 7}');
    await page.click('#start-form button[type=submit]');
    await page.locator('#start-form .notice.error', { hasText: 'customer' }).waitFor();

    await page.fill('#run-input', '{"customer": "cust-03"}');
    await page.click('#start-form button[type=submit]');
    await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
    await page.locator('.run-title .badge', { hasText: 'succeeded' }).waitFor({ timeout: 20_000 });
  });

  it('pauses and resumes a workflow from its page; the state shows in the list and survives a reload', async () => {
    const state = async () =>
      ((await (await fetch(`${open.url}/v1/workflows/long-job`)).json()) as { paused: boolean }).paused;
    await page.goto(`${open.url}/workflows?name=long-job`);
    await page.locator('#wf-pause', { hasText: 'Pause' }).waitFor();
    expect(await page.locator('#wf-paused .tag').count()).toBe(0);
    await page.click('#wf-pause');
    await page.locator('#wf-pause', { hasText: 'Resume' }).waitFor();
    await page.locator('#wf-paused .tag', { hasText: 'paused' }).waitFor();
    await page.locator('.wf-list li[data-name="long-job"] .wf-state .tag', { hasText: 'paused' }).waitFor();
    expect(await state()).toBe(true);
    await shot('05b-workflow-paused');

    // Stored in PostgreSQL: a new page load shows it from GET /v1/workflows.
    await page.reload();
    await page.locator('.wf-list li[data-name="long-job"] .wf-state .tag', { hasText: 'paused' }).waitFor();
    expect(await page.locator('.wf-list li[data-name="billing"] .wf-state .tag').count()).toBe(0);
    await page.click('#wf-pause');
    await page.locator('#wf-pause', { hasText: 'Pause' }).waitFor();
    expect(await page.locator('#wf-paused .tag').count()).toBe(0);
    expect(await page.locator('.wf-list li[data-name="long-job"] .wf-state .tag').count()).toBe(0);
    expect(await state()).toBe(false);
  });

  it('shows the functions page, or says the function overview is not available', async () => {
    // A gateway without GET /v1/functions answers 404 there; the page says so instead of failing.
    watcher.allow(/status of 404 .*\/v1\/functions/);
    await page.goto(`${open.url}/functions`);
    const table = page.locator('#functions-table');
    await table.waitFor();
    const text = await table.innerText();
    for (const fn of ['charge-card', 'fetch-data', 'make-document', 'slow-job']) expect(text).toContain(fn);
    await shot('06-functions');

    // The same page against a gateway whose GET /v1/functions is a 404 (as before that route existed).
    await page.route('**/v1/functions', (route) =>
      route.fulfill({
        status: 404,
        contentType: 'application/json',
        body: JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no route for GET /v1/functions' } }),
      }),
    );
    try {
      await page.goto(`${open.url}/functions`);
      await page.locator('.notice', { hasText: 'Function overview not available' }).waitFor();
      const placeholder = await page.locator('#functions-table').innerText();
      for (const fn of ['charge-card', 'fetch-data', 'make-document', 'slow-job']) expect(placeholder).toContain(fn);
      expect(placeholder).toContain('{fn.charge-card}');
      await shot('06-functions-unavailable');
    } finally {
      await page.unroute('**/v1/functions');
    }
  });

  it('pauses and resumes a function from the functions page, and shows it paused', async () => {
    await page.goto(`${open.url}/functions`);
    const row = page.locator('#functions-table tr[data-function="make-document"]');
    await row.locator('.fn-running').waitFor();
    // The prompt for a reason is accepted empty (the dialog handler of the suite).
    await row.locator('button[data-action="pause"]').click();
    await page.locator('#functions-table tr[data-function="make-document"][data-paused="true"] .fn-paused').waitFor();
    await page.locator('#functions-flash .notice', { hasText: 'make-document paused' }).waitFor();
    expect(await row.locator('button[data-action="resume"]').innerText()).toBe('Resume');
    // The API says the same: stored, and the queue itself is paused.
    const listed = (await (await fetch(`${open.url}/v1/functions`)).json()) as { functions: { name: string }[] };
    expect(listed.functions.find((f: { name: string }) => f.name === 'make-document')).toMatchObject({ paused: true });
    expect(await engine.coordinator.functionQueue('make-document').isPaused()).toBe(true);
    await shot('06-functions-paused');

    await row.locator('button[data-action="resume"]').click();
    await page.locator('#functions-table tr[data-function="make-document"][data-paused="false"] .fn-running').waitFor();
    expect(await engine.coordinator.functionQueue('make-document').isPaused()).toBe(false);
  });

  it('serves Bull Board at /admin/queues with every function queue and the coordinator', async () => {
    await page.goto(`${open.url}/admin/queues`);
    for (const name of ['{coordinator}', '{fn.charge-card}', '{fn.fetch-data}', '{fn.release-data}', '{fn.slow-job}']) {
      await page.getByText(name, { exact: true }).first().waitFor({ timeout: 15_000 });
    }
    await page.waitForLoadState('networkidle');
    await shot('07-bull-board');
    // A queue's failed jobs, each linked to its run in the dashboard.
    await page.getByText('{fn.charge-card}', { exact: true }).first().click();
    await page.waitForURL(/\/admin\/queues\/queue\//);
    await page.waitForFunction(() => !document.body.innerText.includes('Loading'), undefined, { timeout: 15_000 });
    await page.waitForLoadState('networkidle');
    await shot('07-bull-board-queue');
    const runLink = page.getByRole('link', { name: 'Open the run' }).first();
    expect(await runLink.getAttribute('href')).toMatch(/^\/runs\/[0-9a-f-]{36}$/);
  });

  it('asks for the API key when the API needs one and keeps it for the tab', async () => {
    const keyedPage = await context.newPage();
    const keyedWatcher = watch(keyedPage);
    // The 401s that make the page ask for a key are expected.
    keyedWatcher.allow(/status of 401/);
    try {
      await keyedPage.goto(`${keyed.url}/`);
      await keyedPage.locator('#auth-form').waitFor();
      await keyedPage.fill('#auth-key', 'wrong-key');
      await keyedPage.click('#auth-form button[type=submit]');
      await keyedPage.locator('#auth-error', { hasText: 'refused' }).waitFor();
      await shot('08-api-key', keyedPage);
      await keyedPage.fill('#auth-key', API_KEY);
      await keyedPage.click('#auth-form button[type=submit]');
      await keyedPage.locator(`tr[data-run-id="${runs.failed}"]`).waitFor();
      expect(await keyedPage.evaluate(() => sessionStorage.getItem('baton.apiKey'))).toBe(API_KEY);
      // The key survives navigation within the tab.
      await keyedPage.goto(`${keyed.url}/runs/${runs.succeeded}`);
      await keyedPage.locator('#document-link').waitFor();
      expect(await keyedPage.locator('#auth').isHidden()).toBe(true);

      // Bull Board takes the key as HTTP Basic's password; without it, 401.
      const denied = await keyedPage.request.get(`${keyed.url}/admin/queues`);
      expect(denied.status()).toBe(401);
      expect(denied.headers()['www-authenticate']).toMatch(/^Basic /);
      const allowed = await keyedPage.request.get(`${keyed.url}/admin/queues/api/queues`, {
        headers: { Authorization: `Basic ${Buffer.from(`admin:${API_KEY}`).toString('base64')}` },
      });
      expect(allowed.status()).toBe(200);
      expect(keyedWatcher.problems).toEqual([]);
    } finally {
      await keyedPage.close();
    }
  });

  it('sends nothing off the machine, and serves the pages with a strict CSP and cacheable assets', async () => {
    // Only Bull Board's stylesheet link to a web-font service was asked for (and answered locally).
    expect(external.filter((u) => !u.startsWith('https://fonts.googleapis.com/'))).toEqual([]);
    const res = await page.request.get(`${open.url}/`);
    expect(res.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers()['cache-control']).toBe('no-cache');
    const asset = /src="(\/assets\/[0-9a-f]{12}\/app\.js)"/.exec(await res.text())?.[1];
    expect(asset).toBeDefined();
    const js = await page.request.get(`${open.url}${asset}`);
    expect(js.status()).toBe(200);
    expect(js.headers()['cache-control']).toContain('immutable');
  });

  it('shows a forEach step’s progress and items, and links a child run and its parent both ways', async () => {
    await saveDefinition(env.pool, {
      name: 'batch',
      steps: [
        {
          id: 'each',
          forEach: '{{ input.customers }}',
          concurrency: 2,
          function: 'fetch-data',
          input: { customer: '{{ item }}' },
          retry: quick,
        },
        { id: 'kid', workflow: 'paperwork', input: {} },
      ],
    });
    const customers = Array.from({ length: 25 }, (_, i) => `cust-${i}`);
    const parentId = await engine.start('batch', { customers });
    await engine.waitForRun(parentId, ['succeeded']);
    const { rows } = await env.pool.query(`SELECT id FROM runs WHERE parent_run_id = $1`, [parentId]);
    expect(rows).toHaveLength(1);
    const childId: string = rows[0].id;

    await page.goto(`${open.url}/runs/${parentId}`);
    const each = page.locator('.timeline > li[data-step-id="each"]');
    await each.locator('.fanout-progress').waitFor();
    expect(await each.locator('.fanout-progress').innerText()).toBe('25 succeeded · 0 failed · 0 running of 25 items');
    // The run's first page of items, then the rest through the "more" control.
    const rowsOf = each.locator('.items-table tbody tr');
    expect(await rowsOf.count()).toBe(20);
    await each.locator('.items-more').click();
    await page.waitForFunction(
      () => document.querySelectorAll('li[data-step-id="each"] .items-table tbody tr').length === 25,
    );
    expect(await rowsOf.evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute('data-index'))))).toEqual([
      ...Array(25).keys(),
    ]);
    expect(await each.locator('.items-more').count()).toBe(0);
    await shot('09-run-fan-out');

    // The child step links to the child run, which links back to its parent.
    const childLink = page.locator('.timeline > li[data-step-id="kid"] a.child-run-link');
    expect(await childLink.getAttribute('href')).toBe(`/runs/${childId}`);
    await childLink.click();
    await page.waitForURL(`**/runs/${childId}`);
    const parentLink = page.locator('#parent-run-link');
    await parentLink.waitFor();
    expect(await parentLink.getAttribute('href')).toBe(`/runs/${parentId}`);
    expect(await page.locator('.summary').innerText()).toContain('kid');
    await shot('10-child-run');
    await parentLink.click();
    await page.waitForURL(`**/runs/${parentId}`);
    await page.locator('.timeline > li[data-step-id="each"] .fanout-progress').waitFor();

    // The runs list marks the child with a link to its parent; "Top-level only" hides it.
    await page.goto(`${open.url}/?workflow=paperwork`);
    const childRow = page.locator(`tr[data-run-id="${childId}"]`);
    await childRow.waitFor();
    expect(await childRow.locator('a.child-of').getAttribute('href')).toBe(`/runs/${parentId}`);
    await page.check('#filter-top-level');
    await page.waitForURL('**/?workflow=paperwork&topLevel=true');
    await childRow.waitFor({ state: 'detached' });
    expect(await page.locator('.empty').innerText()).toBe('No runs match these filters.');
  });

  it('shows bulk operations with their progress on the runs page, and stops a running one', async () => {
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${open.url}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(202);
      return (await res.json()) as { operationId: string; matched: number };
    };
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${open.url}/v1/workflows/long-job/runs`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ tags: { group: 'ops' } }),
      });
      ids.push(((await res.json()) as { runId: string }).runId);
    }
    for (const id of ids) await engine.waitForRun(id, ['running']);
    const ops = { workflow: 'long-job', tags: { group: 'ops' } };
    const cancel = await post('/v1/runs/bulk/cancel', { filter: ops, ratePerSec: 10 });
    expect(cancel.matched).toBe(5);

    await page.goto(`${open.url}/`);
    const done = page.locator(`#operations li.op[data-operation-id="${cancel.operationId}"][data-status="succeeded"]`);
    await done.waitFor({ timeout: 20_000 });
    expect(await done.locator('.op-counts').innerText()).toBe('5/5 handled · 5 cancelled');
    for (const id of ids) await engine.waitForRun(id, ['cancelled']);

    // A slow re-drive (1 a second): its Stop button ends it with runs left untouched.
    const retry = await post('/v1/runs/bulk/retry', { filter: { ...ops, status: 'cancelled' }, ratePerSec: 1 });
    const row = page.locator(`#operations li.op[data-operation-id="${retry.operationId}"]`);
    await row.locator('.op-cancel').click({ timeout: 20_000 }); // the confirm() dialog is accepted
    await page
      .locator(`#operations li.op[data-operation-id="${retry.operationId}"][data-status="cancelled"]`)
      .waitFor();
    const text = await row.locator('.op-counts').innerText();
    const handled = Number(/^(\d+)\/5 handled/.exec(text)?.[1]);
    expect(handled).toBeLessThan(5);
    expect(await row.locator('.op-progress').getAttribute('aria-valuenow')).toBe(String(handled));
    await shot('11-bulk-operations');

    // The runs it retried are running again: stopped here, so that teardown does not wait for them.
    const stop = await post('/v1/runs/bulk/cancel', { filter: ops, ratePerSec: 100 });
    await page.locator(`#operations li.op[data-operation-id="${stop.operationId}"][data-status="succeeded"]`).waitFor();
    for (const id of ids) await engine.waitForRun(id, ['cancelled']);
  });

  it('forks a finished run from a step: the new run names its source and shows the kept steps as copied', async () => {
    await page.goto(`${open.url}/runs/${runs.failed}`);
    await page.locator('.run-title .badge', { hasText: 'succeeded' }).waitFor();
    await page.click('#fork');
    await page.selectOption('#fork-step', 'charge');
    await page.click('#fork-submit');
    await page.waitForURL((url) => /\/runs\/[0-9a-f-]{36}$/.test(url.pathname) && !url.pathname.endsWith(runs.failed));
    await page.locator('.run-title .badge', { hasText: 'succeeded' }).waitFor({ timeout: 20_000 });
    expect(await page.locator('#forked-from-link').getAttribute('href')).toBe(`/runs/${runs.failed}`);
    const items = await page
      .locator('.timeline > li')
      .evaluateAll((els) => els.map((e) => `${e.getAttribute('data-step-id')}:${e.getAttribute('data-status')}`));
    expect(items).toEqual(['fetchOrders:succeeded', 'charge:succeeded']);
    expect(await page.locator('.timeline > li[data-step-id="fetchOrders"] .tag-copied').innerText()).toBe('copied');
    expect(await page.locator('.timeline > li[data-step-id="charge"] .tag-copied').count()).toBe(0);
    await shot('12-run-forked');
  });
});
