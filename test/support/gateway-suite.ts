import fs from 'node:fs';
import path from 'node:path';
import type { Express } from 'express';
import type { Redis } from 'ioredis';
import {
  coordinatorQueue,
  createLogger,
  parseDefinitionText,
  saveDefinition,
  type Pool,
  type CoordinatorClient,
} from '@baton/engine';
import { createApp } from '../../services/gateway/src/app';
import type { GatewayConfig } from '../../services/gateway/src/config';
import { createTestEnv, type TestEnv } from './env';

/**
 * The shared setup of the gateway's HTTP API suites (test/integration/gateway-*.test.ts): the
 * gateway against a real PostgreSQL and Redis. No coordinator runs there, so started runs stay
 * `pending` (the suites' apps start every run through the inbox: BATON_DIRECT_START=false; a suite
 * asks for `appWith({ directStart: true })` to see a run start with its first steps); step, attempt,
 * log and document rows are written with SQL as the coordinator would.
 * Each suite gets its own database and Redis prefix (`createTestEnv(suite)`), with the invoice
 * workflow (workflows/invoice.yaml) and GREET saved.
 */

const INVOICE_YAML = path.resolve(__dirname, '../../workflows/invoice.yaml');
const FALLBACK_INVOICE = {
  name: 'invoice',
  input: {
    type: 'object',
    required: ['customerId'],
    additionalProperties: false,
    properties: { customerId: { type: 'string' } },
  },
  steps: [
    { id: 'fetchOrders', function: 'fetch-orders', input: { customerId: '{{ input.customerId }}' } },
    { id: 'createInvoice', function: 'create-invoice', compensate: { function: 'void-invoice' } },
    { id: 'generatePdf', function: 'generate-pdf' },
    { id: 'sendEmail', function: 'send-email' },
  ],
};

/** A workflow with a precise input schema, independent of how invoice.yaml evolves. */
export const GREET = {
  name: 'greet',
  description: 'Says hello',
  input: {
    type: 'object',
    required: ['name'],
    additionalProperties: false,
    properties: { name: { type: 'string', minLength: 1 }, times: { type: 'integer', minimum: 1 } },
  },
  steps: [
    { id: 'hello', function: 'say-hello', input: { name: '{{ input.name }}' } },
    { id: 'bye', function: 'say-bye' },
  ],
};

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface GatewaySuite {
  /** Set in the suite's beforeAll. */
  readonly env: TestEnv;
  readonly coordinator: CoordinatorClient;
  /** The app with the suite's config: no API keys, a 1 MB body limit. */
  readonly app: Express;
  /** Another app over the same suite, with config overrides or another pool or Redis connection. */
  appWith(overrides?: Partial<GatewayConfig>, pool?: Pool, redis?: Redis): Express;
  /** Pools a test made: ended after the suite. */
  readonly extraPools: Pool[];
  /**
   * Registers `close` (an engine, workers, sweepers the suite started on its database and Redis) to
   * run in the suite's teardown before they are closed and dropped, last registered first. Use it
   * instead of an `afterAll` of the suite's own: jest-circus runs a describe block's afterAll hooks in
   * the order they were declared, and this one is declared first, so a later `afterAll` would close
   * the engine only after its pool had ended, its Redis keys had been deleted and its connection quit
   * (what a reconciler tick or a worker's close then met: "Connection is closed").
   */
  beforeCleanup(close: () => Promise<unknown> | unknown): void;
}

/** Registers the suite's beforeAll/afterAll (call it inside the suite's describe). */
export function useGatewaySuite(suite: string): GatewaySuite {
  let env: TestEnv | undefined;
  let coordinator: CoordinatorClient | undefined;
  let config: GatewayConfig | undefined;
  let app: Express | undefined;
  const logger = createLogger('gateway-test', 'silent');
  const extraPools: Pool[] = [];
  const closers: (() => Promise<unknown> | unknown)[] = [];
  const ready = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the gateway suite is not set up yet (use it inside a test or hook)');
    return value;
  };

  const appWith = (overrides: Partial<GatewayConfig> = {}, pool?: Pool, redis?: Redis): Express =>
    createApp({
      pool: pool ?? ready(env).pool,
      redis: redis ?? ready(env).redis,
      coordinator: ready(coordinator),
      config: { ...ready(config), ...overrides },
      logger,
    });

  beforeAll(async () => {
    env = await createTestEnv(suite);
    coordinator = coordinatorQueue(env.queues);
    config = { ...env.config, port: 0, apiKeys: [], bodyLimit: '1mb', directStart: false };
    app = appWith();
    const invoice = fs.existsSync(INVOICE_YAML)
      ? parseDefinitionText(fs.readFileSync(INVOICE_YAML, 'utf8'), 'invoice.yaml')
      : FALLBACK_INVOICE;
    await saveDefinition(env.pool, invoice);
    await saveDefinition(env.pool, GREET);
    await env.redis.ping();
  });

  afterAll(async () => {
    for (const close of closers.reverse()) await close();
    await Promise.all(extraPools.map((p) => p.end()));
    await coordinator?.close();
    await env?.cleanup();
  });

  return {
    get env() {
      return ready(env);
    },
    get coordinator() {
      return ready(coordinator);
    },
    get app() {
      return ready(app);
    },
    appWith,
    extraPools,
    beforeCleanup(close) {
      closers.push(close);
    },
  };
}
