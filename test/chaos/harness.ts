import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { simpleParser, type ParsedMail } from 'mailparser';
import pg from 'pg';
import { SMTPServer } from 'smtp-server';
import {
  createRedis,
  deleteKeysWithPrefix,
  functionQueueName,
  keyServers,
  loadDefinitionsFromDir,
  migrate,
  redisOptionsFrom,
  seedDemoData,
  type RedisConnection,
} from '@baton/engine';
import { freePort, withDatabase } from '../support/env';
import { Ledger } from './ledger';
import { drive, tally, type LoadOptions, type RequestResult, type RunRequest } from './load';

/**
 * The chaos harness: Baton as real processes (gateway, coordinator, every function — each
 * `node <workspace>/dist/main.js`, as the containers run them) against a fresh database, a Redis key
 * prefix of its own and an in-test SMTP server. Scenarios start runs, inject one fault (kill -9,
 * SIGTERM, restart, a wipe of this suite's Redis keys, terminated PostgreSQL connections, SMTP down),
 * wait until the system is idle and check the invariants of docs/RELIABILITY.md.
 *
 * The machine's PostgreSQL and Redis servers are shared with other suites: the harness never stops
 * them; it only kills processes it started, by pid.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const TERMINAL = ['succeeded', 'failed', 'compensated', 'compensation_failed', 'cancelled'];
const START_TIMEOUT_MS = 90_000;

export const RECONCILE_INTERVAL_MS = 500;
export const INBOX_CLAIM_MS = 2_000;
export const RECONCILE_GRACE_MS = 1_000;

async function admin<T>(fn: (client: pg.Client) => Promise<T>, serverUrl = SERVER_URL): Promise<T> {
  const client = new pg.Client({ connectionString: withDatabase(serverUrl, 'postgres') });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

// ---- SMTP -------------------------------------------------------------------------------------

/** A real SMTP server on a fixed port that can be taken down and brought back; mail survives. */
export class ChaosSmtp {
  readonly mails: { recipients: string[]; mail: ParsedMail }[] = [];
  private server?: SMTPServer;
  private constructor(readonly port: number) {}

  static async start(): Promise<ChaosSmtp> {
    const smtp = new ChaosSmtp(await freePort());
    await smtp.up();
    return smtp;
  }

  get isUp(): boolean {
    return this.server !== undefined;
  }

  async up(): Promise<void> {
    if (this.server) return;
    const server = new SMTPServer({
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      logger: false,
      onData: (stream, session, callback) => {
        simpleParser(stream).then(
          (mail) => {
            this.mails.push({ recipients: session.envelope.rcptTo.map((r) => r.address), mail });
            callback();
          },
          (err: Error) => callback(err),
        );
      },
    });
    server.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.server = server;
  }

  /** Stops listening and drops open sessions: senders see refused connections until `up()`. */
  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // smtp-server waits for sessions to end; a down server does not wait.
    for (const conn of (server as unknown as { connections?: Set<{ close(): void }> }).connections ?? []) {
      try {
        conn.close();
      } catch {
        // already closing
      }
    }
    await Promise.race([closed, sleep(2_000, undefined, { ref: false })]);
  }

  /** Received mails per Message-ID. */
  countsByMessageId(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const { mail } of this.mails) {
      const id = mail.messageId ?? '(none)';
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    return counts;
  }
}

// ---- processes --------------------------------------------------------------------------------

export interface Component {
  name: string;
  /** The workspace whose dist/main.js runs (two coordinators share one). */
  dir: string;
  kind: 'gateway' | 'coordinator' | 'function';
}

interface Proc {
  component: Component;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  running: boolean;
  /** Set when the harness killed or stopped it on purpose. */
  expectedExit: boolean;
  /** Started with BATON_FAILPOINT set (a SIGKILL exit is then the failpoint's). */
  failpoint: boolean;
}

export function discoverComponents(): Component[] {
  const functions = fs
    .readdirSync(path.join(ROOT, 'functions'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(ROOT, 'functions', d.name, 'package.json')))
    .map((d) => d.name)
    .sort();
  return [
    { name: 'gateway', dir: 'services/gateway', kind: 'gateway' },
    { name: 'coordinator', dir: 'services/coordinator', kind: 'coordinator' },
    ...functions.map((name) => ({ name, dir: `functions/${name}`, kind: 'function' as const })),
  ];
}

// ---- results ----------------------------------------------------------------------------------

export interface ScenarioRow {
  scenario: string;
  /** The seeds this row sums (one per repetition). */
  seeds: number[];
  /** Run starts the load sent (Jepsen-style classification below). */
  requests: number;
  /** 202/200 with a run id. */
  ok: number;
  /** Definite refusals (4xx, 503 with a body saying so, connection refused). */
  failed: number;
  /** No definite answer (timeout, reset, other 5xx). */
  unknown: number;
  /** Of the unknown ones, those whose run turned out to exist (looked up by idempotency key). */
  unknownStarted: number;
  /** Runs checked at the end: ok + unknown-but-started + the scenario's own. */
  runs: number;
  faults: number;
  /** Checked runs missing, ending otherwise than expected, or whose effects the ledger or the mailbox never saw. */
  lost: number;
  /** Distinct effects beyond one per logical effect, counted by the ledger (plus the scenario's own checks). */
  duplicated: number;
  /** Raw deliveries the ledger absorbed as replays (same key, same body): the step ran again. */
  redelivered: number;
  stuck: number;
  /** Baton's own records broken (invariants 2–5: completion twice, compensation order, attempts over max…) and refusals that started a run anyway. */
  internal: number;
  recoverySeconds: number;
  /** E-mails received more than once with the same Message-ID (at-least-once delivery; reported). */
  mailResent: number;
  notes: string[];
}

export interface InvariantReport {
  accepted: number;
  missing: string[];
  stuck: { id: string; status: string }[];
  unexpected: { id: string; status: string; expected: string; error: unknown }[];
  duplicateCompletions: unknown[];
  duplicateCompensations: unknown[];
  compensationOrder: { runId: string; expected: string[]; actual: string[] }[];
  duplicateRunsPerKey: unknown[];
  duplicateInvoices: unknown[];
  missingInvoices: string[];
  missingMails: string[];
  /** Succeeded runs whose expected effects the ledger never saw (`run: key`). */
  missingEffects: string[];
  /** The ledger's duplicates (distinct effects beyond one per key or per logical effect). */
  ledgerDuplicates: string[];
  redelivered: number;
  /** Requests answered with a definite refusal whose run exists all the same. */
  refusedButStarted: string[];
  mailResent: { messageId: string; count: number }[];
  attemptsOverMax: unknown[];
  queueBacklog: number;
  crashed: string[];
}

export interface AcceptedRun {
  runId: string;
  workflow: string;
  /** The status this run must end in when every fault was recovered from. */
  expect: string;
  idempotencyKey?: string;
  /** Ledger keys the run's steps must have produced once it succeeded. */
  effects?: string[];
}

/** One step that records its side effect in the ledger (POST /effect, keyed like ctx.idempotencyKey). */
export function ledgerStep(
  id: string,
  ledgerUrl: string,
  opts: { needs?: string[]; workflow?: string; revision?: number; delayMs?: number } = {},
): Record<string, unknown> {
  return {
    id,
    function: 'http-request',
    ...(opts.needs ? { needs: opts.needs } : {}),
    input: {
      url: `${ledgerUrl}/effect`,
      method: 'POST',
      // The step's idempotency key as ctx.idempotencyKey has it (`<runId>:<stepId>`).
      headers: { 'Idempotency-Key': `{{ run.id }}:${id}` },
      body: {
        run: '{{ run.id }}',
        step: id,
        workflow: opts.workflow ?? DIAMOND,
        revision: opts.revision ?? 1,
        ...(opts.delayMs ? { delayMs: opts.delayMs } : {}),
      },
      timeoutMs: 10_000,
    },
    retry: { attempts: 8, backoff: { type: 'exponential', delayMs: 200, maxDelayMs: 5_000 } },
  };
}

/** The ledger keys a run of the diamond leaves. */
export const diamondEffects = (runId: string): string[] => ['a', 'b', 'c', 'd'].map((s) => `${runId}:${s}`);

/**
 * Diamond: a → (b, c) → d, b and c in parallel; every step's side effect is a POST to the ledger
 * (a step takes 20–120 ms there, so a fault can land mid-step).
 */
export const DIAMOND = 'chaos-diamond';
export function diamondDefinition(ledgerUrl: string, revision = 1): Record<string, unknown> {
  const step = (id: string, needs: string[]) =>
    ledgerStep(id, ledgerUrl, { needs, revision, delayMs: 20 + ((id.charCodeAt(0) * 37) % 100) });
  return {
    name: DIAMOND,
    description: 'chaos suite: a diamond of parallel steps, each recording its effect in the ledger',
    steps: [step('a', []), step('b', ['a']), step('c', ['a']), step('d', ['b', 'c'])],
    output: { revision: '{{ steps.d.output.body.revision }}' },
  };
}

/** A poison workflow: three compensable steps, then one that always fails (a closed port). */
export const POISON = 'chaos-poison';
export function poisonDefinition(closedPort: number): Record<string, unknown> {
  const undoable = (id: string, needs: string[]) => ({
    id,
    function: 'transform',
    needs,
    input: { expression: `"${id} done"` },
    compensate: { function: 'transform', input: { expression: `"${id} undone"` } },
  });
  return {
    name: POISON,
    description: 'chaos suite: a step that always throws, after steps that must be compensated',
    steps: [
      undoable('a', []),
      undoable('b', ['a']),
      undoable('c', ['a']),
      {
        id: 'poison',
        function: 'http-request',
        needs: ['b', 'c'],
        input: { url: `http://127.0.0.1:${closedPort}/never`, method: 'GET' },
        timeoutMs: 5_000,
        retry: { attempts: 3, backoff: { type: 'fixed', delayMs: 200 } },
      },
    ],
  };
}

// ---- the system -------------------------------------------------------------------------------

/**
 * Where a system's servers are: by default the machine's shared PostgreSQL and Redis; a scenario that
 * restarts a server starts a private one (test/chaos/private-servers.ts) and passes its URLs.
 */
export interface SystemServers {
  /** A PostgreSQL URL whose user may create databases (its database part is replaced). */
  serverUrl?: string;
  redisUrl?: string;
  /** REDIS_CLUSTER_NODES of a Redis Cluster (test/support/redis-cluster.ts): every component uses it. */
  redisClusterNodes?: string;
}

export interface SystemOptions {
  /** Extra environment per component name (or kind: `gateway`, `coordinator`, `function`; `*`: all). */
  env?: Record<string, NodeJS.ProcessEnv>;
  /**
   * BATON_FAILPOINT for one component: it is restarted after each failpoint exit (SIGKILL), with the
   * failpoint for the first `exits` lives, then without (so the run can finish).
   */
  failpoint?: { component: string; spec: string; exits: number; seed: number };
}

export class ChaosSystem {
  readonly id = crypto.randomBytes(4).toString('hex');
  readonly database: string;
  readonly databaseUrl: string;
  readonly prefix: string;
  readonly accepted: AcceptedRun[] = [];
  readonly notes: string[] = [];
  /** Every run start the load sent, classified (see ./load.ts). */
  readonly requests: RequestResult[] = [];
  faults = 0;
  failpointExits = 0;
  ledger!: Ledger;
  private stopping = false;
  /** When the first fault was injected (recovery time counts from there). */
  firstFaultAt?: number;
  pool!: pg.Pool;
  redis!: RedisConnection;
  smtp!: ChaosSmtp;
  baseUrl = '';
  /** A port nothing listens on, for the poison step. */
  closedPort = 0;
  private port = 0;
  private readonly procs = new Map<string, Proc>();
  private readonly output: string[] = [];
  private readonly components = new Map(discoverComponents().map((c) => [c.name, c]));
  private crashed: string[] = [];

  /** The PostgreSQL server (its maintenance database URL) and the Redis server this system uses. */
  readonly serverUrl: string;
  readonly redisUrl: string;
  readonly redisClusterNodes?: string;

  constructor(
    readonly suite: string,
    servers: SystemServers = {},
    readonly options: SystemOptions = {},
  ) {
    this.serverUrl = servers.serverUrl ?? SERVER_URL;
    this.redisUrl = servers.redisUrl ?? REDIS_URL;
    if (servers.redisClusterNodes) this.redisClusterNodes = servers.redisClusterNodes;
    this.database = `baton_chaos_${suite.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${this.id}`;
    this.databaseUrl = withDatabase(this.serverUrl, this.database);
    this.prefix = `baton-chaos-${suite.replace(/[^a-z0-9]/gi, '-').toLowerCase()}-${this.id}`;
  }

  /** Fresh database (migrated, seeded, workflows/ loaded), SMTP server, then every component. */
  async start(): Promise<void> {
    for (const c of this.components.values()) {
      if (!fs.existsSync(path.join(ROOT, c.dir, 'dist', 'main.js')))
        throw new Error(`${c.dir}/dist/main.js missing: run npx tsc -b first`);
    }
    await admin((c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(this.database)}`), this.serverUrl);
    await migrate(this.databaseUrl);
    await seedDemoData(this.databaseUrl);
    this.pool = new pg.Pool({ connectionString: this.databaseUrl, max: 4, application_name: 'chaos-harness' });
    // Terminated connections (a scenario) surface here on idle clients; the pool replaces them.
    this.pool.on('error', () => undefined);
    await loadDefinitionsFromDir(this.pool as never, path.join(ROOT, 'workflows'));
    this.redis = createRedis(
      redisOptionsFrom({
        REDIS_URL: this.redisClusterNodes ? undefined : this.redisUrl,
        REDIS_HOST: '127.0.0.1',
        REDIS_PORT: 6379,
        REDIS_CLUSTER_NODES: this.redisClusterNodes,
      }),
      'chaos-harness',
    );
    this.redis.on('error', () => undefined);
    this.smtp = await ChaosSmtp.start();
    this.ledger = await Ledger.start();
    this.port = await freePort();
    this.closedPort = await freePort();
    this.baseUrl = `http://127.0.0.1:${this.port}`;
    await Promise.all([...this.components.keys()].map((name) => this.startComponent(name)));
  }

  private env(component: Component): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: this.redisUrl,
      ...(this.redisClusterNodes ? { REDIS_CLUSTER_NODES: this.redisClusterNodes } : {}),
      BATON_QUEUE_PREFIX: this.prefix,
      SMTP_URL: `smtp://127.0.0.1:${this.smtp.port}`,
      LOG_LEVEL: process.env.CHAOS_LOG_LEVEL ?? 'info',
      RECONCILE_INTERVAL_MS: String(RECONCILE_INTERVAL_MS),
      RECONCILE_GRACE_MS: String(RECONCILE_GRACE_MS),
      // A killed coordinator's unacknowledged inbox entries are taken over after this (default 30 s).
      COORDINATOR_INBOX_CLAIM_MS: String(INBOX_CLAIM_MS),
      HTTP_REQUEST_ALLOWED_HOSTS: '127.0.0.1',
      // The whole load comes from one client (this process): the gateway's per-client limit is off.
      BATON_RATE_LIMIT: '0',
      NO_COLOR: '1',
      ...this.options.env?.['*'],
      ...this.options.env?.[component.kind],
      ...this.options.env?.[component.name],
    };
    delete env.BATON_FAILPOINT;
    const fp = this.options.failpoint;
    if (fp && fp.component === component.name && this.failpointExits < fp.exits) {
      env.BATON_FAILPOINT = fp.spec;
      env.BATON_FAILPOINT_SEED = String(fp.seed * 1000 + this.failpointExits);
    }
    for (const key of [
      'NODE_OPTIONS',
      'FORCE_COLOR',
      'REDIS_HOST',
      'REDIS_PORT',
      'PORT',
      'METRICS_PORT',
      'WORKFLOWS_DIR',
    ])
      delete env[key];
    if (component.kind === 'gateway') env.PORT = String(this.port);
    else env.METRICS_PORT = '0';
    return env;
  }

  /** Adds a component under a new name (a second coordinator) and starts it. */
  async addComponent(name: string, like: string): Promise<void> {
    const base = this.components.get(like);
    if (!base) throw new Error(`unknown component ${like}`);
    this.components.set(name, { ...base, name });
    await this.startComponent(name);
  }

  /** Starts a component and waits until it says it is up (the gateway: /readyz answers 200). */
  async startComponent(name: string): Promise<void> {
    const component = this.components.get(name);
    if (!component) throw new Error(`unknown component ${name}`);
    if (this.procs.get(name)?.running) throw new Error(`${name} is already running`);
    const env = this.env(component);
    const child = spawn(process.execPath, [path.join(ROOT, component.dir, 'dist', 'main.js')], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let started = false;
    const marker =
      component.kind === 'gateway'
        ? 'gateway listening'
        : component.kind === 'coordinator'
          ? 'coordinator started'
          : 'function worker started';
    const collect = (line: string) => {
      if (!started && line.includes(marker)) started = true;
      this.output.push(`${name}[${child.pid}] ${line}`);
      if (this.output.length > 4_000) this.output.shift();
      if (process.env.CHAOS_VERBOSE) process.stdout.write(`${name} ${line}\n`);
    };
    readline.createInterface({ input: child.stdout! }).on('line', collect);
    readline.createInterface({ input: child.stderr! }).on('line', collect);
    const proc: Proc = {
      component,
      child,
      running: true,
      expectedExit: false,
      failpoint: env.BATON_FAILPOINT !== undefined,
      exited: new Promise((resolve) =>
        child.once('exit', (code, signal) => {
          proc.running = false;
          if (!proc.expectedExit && proc.failpoint && signal === 'SIGKILL') {
            // The failpoint's exit (after the handler, before the report): back 0.5 s later, as a
            // replacement pod would be.
            proc.expectedExit = true;
            this.failpointExits += 1;
            this.markFault();
            if (!this.stopping)
              setTimeout(() => {
                if (this.stopping || this.procs.get(name) !== proc) return;
                this.startComponent(name).catch((err: unknown) => this.crashed.push(`${name} restart: ${String(err)}`));
              }, 500);
          } else if (!proc.expectedExit) {
            // The evidence: what the process printed last.
            const own = this.output.filter((l) => l.startsWith(`${name}[${child.pid}] `)).slice(-12);
            this.crashed.push(`${name} exited (${signal ?? `code ${code}`}): ${own.join('\n')}`);
          }
          resolve({ code, signal });
        }),
      ),
    };
    this.procs.set(name, proc);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!proc.running) throw new Error(`${name} exited while starting:\n${this.tail(40)}`);
      if (started) {
        if (component.kind !== 'gateway') return;
        const res = await fetch(`${this.baseUrl}/readyz`).catch(() => undefined);
        if (res?.status === 200) return;
      }
      await sleep(100);
    }
    throw new Error(`${name} not up after ${START_TIMEOUT_MS / 1000}s:\n${this.tail(40)}`);
  }

  pid(name: string): number | undefined {
    const proc = this.procs.get(name);
    return proc?.running ? proc.child.pid : undefined;
  }

  /** kill -9 (or another signal) of one component, by the pid the harness started; waits for exit. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 30_000): Promise<void> {
    const proc = this.procs.get(name);
    if (!proc?.running) throw new Error(`${name} is not running`);
    proc.expectedExit = true;
    this.markFault();
    proc.child.kill(signal);
    const exited = await Promise.race([proc.exited, sleep(timeoutMs, undefined, { ref: false })]);
    if (!exited) {
      this.notes.push(`${name} still running ${timeoutMs / 1000}s after ${signal}: killed`);
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
  }

  /** Sends a signal that does not end the process (SIGSTOP, SIGCONT); counts SIGSTOP as a fault. */
  signal(name: string, signal: NodeJS.Signals): void {
    const proc = this.procs.get(name);
    if (!proc?.running) throw new Error(`${name} is not running`);
    if (signal === 'SIGSTOP') this.markFault();
    proc.child.kill(signal);
  }

  async restart(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.kill(name, signal);
    await this.startComponent(name);
  }

  markFault(): void {
    this.faults += 1;
    this.firstFaultAt ??= Date.now();
  }

  /** Simulated Redis data loss: every key of this suite's prefix deleted (never FLUSHALL: Redis is shared). */
  async flushRedis(): Promise<number> {
    this.markFault();
    return deleteKeysWithPrefix(this.redis, this.prefix);
  }

  /** Every PostgreSQL connection to this suite's database terminated (other databases untouched). */
  async terminateDatabaseConnections(): Promise<number> {
    this.markFault();
    const { rows } = await admin(
      (c) =>
        c.query(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
          WHERE datname = $1 AND pid <> pg_backend_pid()`,
          [this.database],
        ),
      this.serverUrl,
    );
    return rows.filter((r: { ok: boolean }) => r.ok).length;
  }

  async request(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${this.baseUrl}${url}`, {
      method,
      headers: { 'Content-Type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
  }

  async putWorkflow(definition: Record<string, unknown> | string, name?: string): Promise<number> {
    const isText = typeof definition === 'string';
    const res = await this.request(
      'PUT',
      `/v1/workflows/${name ?? (definition as { name: string }).name}`,
      definition,
      isText ? { 'Content-Type': 'application/yaml' } : {},
    );
    const body = (await res.json()) as { version?: number };
    if (res.status !== 201 && res.status !== 200)
      throw new Error(`PUT workflow: ${res.status} ${JSON.stringify(body)}`);
    return body.version!;
  }

  /**
   * Continuous load (see ./load.ts): `opts.runs` run starts at the rate, classified. Ok ones are
   * accepted runs (checked at the end); unknown and failed ones are looked up by key at the end.
   */
  async load(opts: LoadOptions): Promise<Record<'ok' | 'failed' | 'unknown', number>> {
    const results = await drive(this.baseUrl, opts);
    this.requests.push(...results);
    for (const r of results) if (r.outcome === 'ok' && r.runId) this.accept(r.request, r.runId);
    return tally(results);
  }

  private accept(request: RunRequest, runId: string): void {
    if (this.accepted.some((a) => a.runId === runId)) return;
    this.accepted.push({
      runId,
      workflow: request.workflow,
      expect: request.expect,
      idempotencyKey: request.idempotencyKey,
      ...(request.effects ? { effects: request.effects(runId) } : {}),
    });
  }

  /**
   * The end of a Jepsen-style history: every unknown request is looked up by its idempotency key (a
   * run found is accepted, so checked); every refused one must have no run. Returns how many unknown
   * ones had started and the refusals that started a run anyway.
   */
  async resolveRequests(): Promise<{ unknownStarted: number; refusedButStarted: string[] }> {
    let unknownStarted = 0;
    const refusedButStarted: string[] = [];
    for (const r of this.requests) {
      if (r.outcome === 'ok') continue;
      const { rows } = await this.pool.query<{ id: string }>(
        `SELECT id FROM runs WHERE workflow_name = $1 AND idempotency_key = $2`,
        [r.request.workflow, r.request.idempotencyKey],
      );
      if (!rows.length) continue;
      if (r.outcome === 'unknown') {
        unknownStarted += 1;
        this.accept(r.request, rows[0].id);
      } else refusedButStarted.push(`${r.request.idempotencyKey}: ${r.detail ?? r.status} yet run ${rows[0].id}`);
    }
    return { unknownStarted, refusedButStarted };
  }

  /** `count` invoice runs over cust-01..05 (POST /invoice/start); each must end `succeeded`. */
  async startInvoiceRuns(count: number): Promise<string[]> {
    const started = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const customerId = `cust-0${(i % 5) + 1}`;
        const res = await this.request('POST', '/invoice/start', { customerId });
        const body = (await res.json()) as { runId?: string };
        if (res.status !== 202 || !body.runId)
          throw new Error(`POST /invoice/start: ${res.status} ${JSON.stringify(body)}`);
        this.accepted.push({ runId: body.runId, workflow: 'invoice', expect: 'succeeded' });
        return body.runId;
      }),
    );
    return started;
  }

  /** `count` runs of a saved workflow through POST /v1/workflows/:name/runs. */
  async startRuns(
    workflow: string,
    count: number,
    expect: string,
    input: unknown = {},
    idempotencyKey?: string,
    effects?: (runId: string) => string[],
  ): Promise<{ runId: string; status: number }[]> {
    return Promise.all(
      Array.from({ length: count }, async () => {
        const res = await this.request('POST', `/v1/workflows/${workflow}/runs`, {
          input,
          ...(idempotencyKey ? { idempotencyKey } : {}),
        });
        const body = (await res.json()) as { runId?: string };
        if ((res.status !== 202 && res.status !== 200) || !body.runId)
          throw new Error(`POST /v1/workflows/${workflow}/runs: ${res.status} ${JSON.stringify(body)}`);
        if (!this.accepted.some((r) => r.runId === body.runId))
          this.accepted.push({
            runId: body.runId,
            workflow,
            expect,
            ...(idempotencyKey ? { idempotencyKey } : {}),
            ...(effects ? { effects: effects(body.runId) } : {}),
          });
        return { runId: body.runId, status: res.status };
      }),
    );
  }

  /** Polls PostgreSQL until a step execution matches (e.g. a generate-pdf step `running`). */
  async waitForStep(where: { function: string; status: string }, timeoutMs = 30_000): Promise<string | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      // A step is running as soon as a worker holds its job: a quick step (under 100 ms) is never
      // reported `running` to PostgreSQL, so the queue's active list is where to catch it.
      if (where.status === 'running') {
        const active = await this.redis
          .lindex(`${this.prefix}:${functionQueueName(where.function)}:active`, 0)
          .catch(() => null);
        if (active) return active;
      }
      const { rows } = await this.pool
        .query(`SELECT id FROM step_executions WHERE function_name = $1 AND status = $2 LIMIT 1`, [
          where.function,
          where.status,
        ])
        .catch(() => ({ rows: [] as { id: string }[] }));
      if (rows.length) return rows[0].id as string;
      await sleep(10);
    }
    return undefined;
  }

  /**
   * Waits until every accepted run is terminal (what "idle" means to a user), restarting any component
   * that died on its own (as Kubernetes would) and noting it. Returns the seconds it took.
   */
  async waitIdle(timeoutMs = 120_000): Promise<number> {
    const started = Date.now();
    const deadline = started + timeoutMs;
    while (Date.now() < deadline) {
      await this.restartCrashed();
      const active = await this.pool
        .query(`SELECT count(*)::int AS n FROM runs WHERE status <> ALL($1)`, [TERMINAL])
        .then((r) => r.rows[0].n as number)
        .catch(() => -1);
      const known = await this.pool
        .query(`SELECT count(*)::int AS n FROM runs WHERE id = ANY($1)`, [this.accepted.map((r) => r.runId)])
        .then((r) => r.rows[0].n as number)
        .catch(() => -1);
      if (active === 0 && known === this.accepted.length) break;
      await sleep(250);
    }
    return (Date.now() - started) / 1000;
  }

  private async restartCrashed(): Promise<void> {
    for (const [name, proc] of this.procs) {
      if (!proc.running && !proc.expectedExit) {
        this.notes.push(`${name} crashed on its own and was restarted`);
        proc.expectedExit = true;
        await this.startComponent(name);
      }
    }
  }

  /** The invariants, as counts and evidence (nothing thrown: the scenario decides). */
  async checkInvariants(): Promise<InvariantReport> {
    const q = async <T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> =>
      (await this.pool.query(sql, params)).rows as T[];
    const ids = this.accepted.map((r) => r.runId);
    const runs = await q<{
      id: string;
      status: string;
      workflow_name: string;
      idempotency_key: string | null;
      error: unknown;
    }>(`SELECT id, status, workflow_name, idempotency_key, error FROM runs WHERE id = ANY($1)`, [ids]);
    const byId = new Map(runs.map((r) => [r.id, r]));
    const missing = ids.filter((id) => !byId.has(id));
    const stuck = runs.filter((r) => !TERMINAL.includes(r.status)).map((r) => ({ id: r.id, status: r.status }));
    const unexpected = this.accepted
      .filter((a) => byId.has(a.runId) && TERMINAL.includes(byId.get(a.runId)!.status))
      .filter((a) => byId.get(a.runId)!.status !== a.expect)
      .map((a) => ({
        id: a.runId,
        status: byId.get(a.runId)!.status,
        expected: a.expect,
        error: byId.get(a.runId)!.error,
      }));

    // 2. a step's completion recorded once: per (run, step, kind) — and item, for the items of a
    // forEach/repeat step (item_index; NULL for the step's own execution) — among executions in force.
    const duplicateCompletions = await q(
      `SELECT run_id, step_id, kind, item_index, count(*)::int AS executions,
              count(*) FILTER (WHERE status = 'succeeded')::int AS succeeded
         FROM step_executions WHERE superseded_at IS NULL AND run_id = ANY($1)
        GROUP BY run_id, step_id, kind, item_index
       HAVING count(*) > 1 OR count(*) FILTER (WHERE status = 'succeeded') > 1`,
      [ids],
    );
    // 3. compensations once each, in reverse order of the completions they undo.
    const duplicateCompensations = duplicateCompletions.filter((d) => (d as { kind: string }).kind === 'compensation');
    const compensationOrder: InvariantReport['compensationOrder'] = [];
    const compensated = runs.filter((r) => ['compensated', 'compensation_failed'].includes(r.status)).map((r) => r.id);
    for (const runId of compensated) {
      const rows = await q<{ step_id: string; kind: string; status: string; finished: number | null }>(
        `SELECT step_id, kind, status, extract(epoch FROM finished_at)::float8 AS finished FROM step_executions
          WHERE run_id = $1 AND superseded_at IS NULL ORDER BY finished_at NULLS LAST, created_at`,
        [runId],
      );
      const undoable = new Set(rows.filter((r) => r.kind === 'compensation').map((r) => r.step_id));
      // An undone action ends `compensated`; either way it completed, at `finished`.
      const done = rows.filter(
        (r) =>
          r.kind === 'action' &&
          ['succeeded', 'compensating', 'compensated'].includes(r.status) &&
          undoable.has(r.step_id),
      );
      const finished = new Map(done.map((r) => [r.step_id, r.finished ?? 0]));
      const expected = done.map((r) => r.step_id).reverse();
      // Compensations are planned one at a time: their creation order is the order they ran in.
      const actual = (
        await q<{ step_id: string }>(
          `SELECT step_id FROM step_executions WHERE run_id = $1 AND kind = 'compensation' AND superseded_at IS NULL
            ORDER BY created_at`,
          [runId],
        )
      ).map((r) => r.step_id);
      // Newest completion first; steps that completed at the same instant may come in either order.
      const reversed = actual.every((id, i) => i === 0 || finished.get(actual[i - 1])! >= finished.get(id)!);
      const sameSet = actual.length === expected.length && expected.every((id) => actual.includes(id));
      if (!reversed || !sameSet) compensationOrder.push({ runId, expected, actual });
    }
    // 4. one run per idempotency key; one invoice per run; e-mails.
    const duplicateRunsPerKey = await q(
      `SELECT workflow_name, idempotency_key, count(*)::int AS runs FROM runs
        WHERE idempotency_key IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1`,
    );
    const duplicateInvoices = await q(
      `SELECT run_id, count(*)::int AS invoices FROM invoices WHERE run_id = ANY($1) GROUP BY run_id HAVING count(*) > 1`,
      [ids],
    );
    const succeededInvoiceRuns = runs.filter((r) => r.workflow_name === 'invoice' && r.status === 'succeeded');
    const withInvoice = new Set(
      (await q<{ run_id: string }>(`SELECT DISTINCT run_id FROM invoices WHERE run_id = ANY($1)`, [ids])).map(
        (r) => r.run_id,
      ),
    );
    const missingInvoices = succeededInvoiceRuns.filter((r) => !withInvoice.has(r.id)).map((r) => r.id);
    // The SMTP server may still be delivering the last message when the run is recorded.
    const mailDeadline = Date.now() + 5_000;
    const mailIdOf = (runId: string) => `<${runId}.sendEmail@baton>`;
    while (
      Date.now() < mailDeadline &&
      succeededInvoiceRuns.some((r) => !this.smtp.countsByMessageId().has(mailIdOf(r.id)))
    )
      await sleep(100);
    const counts = this.smtp.countsByMessageId();
    const missingMails = succeededInvoiceRuns.filter((r) => !counts.has(mailIdOf(r.id))).map((r) => r.id);
    const mailResent = [...counts].filter(([, n]) => n > 1).map(([messageId, count]) => ({ messageId, count }));
    // The external ledger: every succeeded run's effects seen there; nothing there twice as distinct effects.
    const succeeded = new Set(runs.filter((r) => r.status === 'succeeded').map((r) => r.id));
    const missingEffects = this.accepted
      .filter((a) => succeeded.has(a.runId) && a.effects)
      .flatMap((a) => a.effects!.filter((key) => !this.ledger.has(key)).map((key) => `${a.runId}: ${key}`));
    const ledgerDuplicates = this.ledger.duplicates();
    // 5. retries bounded.
    const attemptsOverMax = await q(
      `SELECT e.run_id, e.step_id, e.attempt, e.max_attempts,
              (SELECT count(*)::int FROM step_attempts a WHERE a.step_execution_id = e.id) AS attempt_rows
         FROM step_executions e
        WHERE e.run_id = ANY($1)
          AND (e.attempt > e.max_attempts
               OR (SELECT count(*) FROM step_attempts a WHERE a.step_execution_id = e.id) > e.max_attempts)`,
      [ids],
    );
    const queueBacklog = await this.backlog();
    return {
      accepted: ids.length,
      missing,
      stuck,
      unexpected,
      duplicateCompletions,
      duplicateCompensations,
      compensationOrder,
      duplicateRunsPerKey,
      duplicateInvoices,
      missingInvoices,
      missingMails,
      missingEffects,
      ledgerDuplicates,
      redelivered: this.ledger.redelivered(),
      refusedButStarted: [],
      mailResent,
      attemptsOverMax,
      queueBacklog,
      crashed: [...this.crashed],
    };
  }

  /** Jobs still waiting, active or delayed in this suite's function queues (bounded growth: 0 when idle). */
  async backlog(): Promise<number> {
    let total = 0;
    // Every master of a cluster holds some of the queues.
    for (const server of keyServers(this.redis)) {
      let cursor = '0';
      do {
        const [next, keys] = await server.scan(cursor, 'MATCH', `${this.prefix}:{fn.*}:*`, 'COUNT', 500);
        cursor = next;
        for (const key of keys) {
          if (key.endsWith(':wait') || key.endsWith(':active')) total += await server.llen(key);
          else if (key.endsWith(':delayed') || key.endsWith(':prioritized')) total += await server.zcard(key);
        }
      } while (cursor !== '0');
    }
    return total;
  }

  /** The table row of a scenario from its invariant report. */
  row(
    scenario: string,
    report: InvariantReport,
    recoverySeconds: number,
    seed: number,
    unknownStarted = 0,
  ): ScenarioRow {
    const internal =
      report.duplicateCompletions.length +
      report.compensationOrder.length +
      report.attemptsOverMax.length +
      report.refusedButStarted.length;
    const duplicated =
      report.ledgerDuplicates.length + report.duplicateRunsPerKey.length + report.duplicateInvoices.length;
    // A run missing, ending otherwise, or without its effects counts once.
    const lostRuns = new Set([
      ...report.missing,
      ...report.unexpected.map((u) => u.id),
      ...report.missingInvoices,
      ...report.missingMails,
      ...report.missingEffects.map((m) => m.split(':')[0]),
    ]);
    const counts = tally(this.requests);
    return {
      scenario,
      seeds: [seed],
      requests: this.requests.length,
      ok: counts.ok,
      failed: counts.failed,
      unknown: counts.unknown,
      unknownStarted,
      runs: report.accepted,
      faults: this.faults,
      lost: lostRuns.size,
      duplicated,
      redelivered: report.redelivered,
      internal,
      stuck: report.stuck.length,
      recoverySeconds: Math.round(recoverySeconds * 10) / 10,
      mailResent: report.mailResent.reduce((n, m) => n + m.count - 1, 0),
      notes: [
        ...this.notes,
        ...(report.queueBacklog ? [`${report.queueBacklog} jobs left in function queues`] : []),
        ...(this.failpointExits ? [`${this.failpointExits} failpoint exits`] : []),
        ...this.requestNotes(),
        ...this.environmentNotes(),
      ],
    };
  }

  /** What the requests that were not ok got, grouped: `unknown: TimeoutError ×16`. */
  requestNotes(): string[] {
    const groups = new Map<string, number>();
    for (const r of this.requests) {
      if (r.outcome === 'ok') continue;
      const key = `${r.outcome}: ${r.detail ?? r.status}`;
      groups.set(key, (groups.get(key) ?? 0) + 1);
    }
    return [...groups].map(([k, n]) => `${k} ×${n}`);
  }

  /**
   * Faults the scenario did not inject: the machine's PostgreSQL is shared with other suites, and its
   * max_connections running out shows in the components' logs as 53300 "too many clients".
   */
  environmentNotes(): string[] {
    const exhausted = this.output.filter((l) => l.includes('too many clients')).length;
    return exhausted
      ? [`environment: shared PostgreSQL out of connections (53300 "too many clients") ${exhausted}×`]
      : [];
  }

  tail(lines = 80): string {
    return this.output.slice(-lines).join('\n');
  }

  /** Kills every process the harness started (by pid), closes the SMTP server, drops the database and keys. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const proc of this.procs.values()) {
      if (proc.running) {
        proc.expectedExit = true;
        proc.child.kill('SIGKILL');
      }
    }
    await Promise.all([...this.procs.values()].map((p) => p.exited));
    await this.smtp?.down();
    await this.ledger?.stop().catch(() => undefined);
    await this.pool?.end().catch(() => undefined);
    if (this.redis) {
      await deleteKeysWithPrefix(this.redis, this.prefix).catch(() => undefined);
      this.redis.disconnect();
    }
    await admin(
      (c) => c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(this.database)} WITH (FORCE)`),
      this.serverUrl,
    ).catch(() => undefined);
  }
}

/**
 * Runs a scenario on a fresh system: start, then the load (if any) and the act (the fault) side by
 * side, wait idle, resolve the unknown requests by key, check, stop.
 */
export async function runScenario(
  scenario: string,
  act: (system: ChaosSystem) => Promise<void>,
  opts: {
    idleTimeoutMs?: number;
    setup?: (system: ChaosSystem) => Promise<void>;
    /** Scenario-specific checks, once idle (before the system stops). */
    verify?: (system: ChaosSystem) => Promise<void>;
    /** Private servers for this system (default: the machine's shared ones). */
    servers?: SystemServers;
    options?: SystemOptions;
    /** The continuous load for the fault window (built once the system is up). */
    load?: (system: ChaosSystem) => LoadOptions;
    seed?: number;
  } = {},
): Promise<{ row: ScenarioRow; report: InvariantReport; system: ChaosSystem }> {
  const system = new ChaosSystem(scenario, opts.servers, opts.options);
  try {
    await system.start();
    await opts.setup?.(system);
    const actAt = Date.now();
    const load = opts.load ? system.load(opts.load(system)) : Promise.resolve(undefined);
    // Both run to the end even when one throws (the other's processes and timers must settle).
    const [acted, loaded] = await Promise.allSettled([act(system), load]);
    if (acted.status === 'rejected') throw acted.reason;
    if (loaded.status === 'rejected') throw loaded.reason;
    const idleTimeoutMs = opts.idleTimeoutMs ?? 120_000;
    await system.waitIdle(idleTimeoutMs);
    const { unknownStarted, refusedButStarted } = await system.resolveRequests();
    // Unknown requests that did start are now accepted: they must be terminal too.
    if (unknownStarted) await system.waitIdle(Math.min(idleTimeoutMs, 30_000));
    // Time to recover: from the first fault (else from the start of the scenario) until idle.
    const recovery = (Date.now() - (system.firstFaultAt ?? actAt)) / 1000;
    const report = await system.checkInvariants();
    report.refusedButStarted = refusedButStarted;
    await opts.verify?.(system);
    const row = system.row(scenario, report, recovery, opts.seed ?? 0, unknownStarted);
    if (row.lost || row.stuck || row.duplicated || row.internal || report.crashed.length) {
      const brief = { ...report, missingEffects: report.missingEffects.slice(0, 20) };
      process.stderr.write(
        `chaos ${scenario}: ${JSON.stringify({ row, report: brief }, null, 2).slice(0, 20_000)}\n--- last output ---\n${system.tail(60)}\n`,
      );
    }
    return { row, report, system };
  } catch (err) {
    process.stderr.write(`chaos ${scenario} failed: ${String(err)}\n--- last output ---\n${system.tail(80)}\n`);
    throw err;
  } finally {
    await system.stop();
  }
}
