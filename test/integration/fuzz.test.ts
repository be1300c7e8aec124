import crypto from 'node:crypto';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import type { Server } from 'node:http';
import fc from 'fast-check';
import { evaluate, resolveTemplate } from '@baton/workflow';
import {
  coordinatorQueue,
  createLogger,
  parseDefinitionText,
  saveDefinition,
  type CoordinatorClient,
} from '@baton/engine';
import { createApp } from '../../services/gateway/src/app';
import type { GatewayConfig } from '../../services/gateway/src/config';
import { createTestEnv, type TestEnv } from '../support/env';

/**
 * Bad input at every JSON route of the gateway, generated with fast-check: arbitrary JSON, wrong
 * types, unknown fields, huge strings, deep nesting, SQL metacharacters in every string field,
 * invalid ids, malformed JSON bytes. The gateway may accept (2xx) or refuse (4xx with the error
 * shape and a message) but never fails (5xx), stays healthy, and stores nothing for what it refuses.
 *
 * Requests go one at a time to one listening server, and the rows of `runs`, `events` and
 * `workflow_definitions` are counted after each: a 4xx must leave the counts as they were.
 * fast-check's seed is printed on failure; `FUZZ_RUNS` scales the runs per route (default 500, each
 * route's property bounded to 7 s unless FUZZ_RUNS is given).
 */

const RUNS = Number(process.env.FUZZ_RUNS ?? 500);
/**
 * Each property stops after this long even if its runs are not done (a loaded CI machine), so the
 * suite stays well under a minute; an explicit FUZZ_RUNS lifts the bound.
 */
const PROPERTY_TIME_LIMIT_MS = process.env.FUZZ_RUNS ? undefined : 7_000;
const BODY_LIMIT = '256kb';
const INVOICE_YAML = path.resolve(__dirname, '../../workflows/invoice.yaml');

/** A workflow with a precise input schema (as GREET in test/support/gateway-suite.ts). */
const GREET = {
  name: 'greet',
  input: {
    type: 'object',
    required: ['name'],
    additionalProperties: false,
    properties: { name: { type: 'string', minLength: 1 }, times: { type: 'integer', minimum: 1 } },
  },
  steps: [{ id: 'hello', function: 'say-hello', input: { name: '{{ input.name }}' } }],
};

/** A workflow that takes any input, so arbitrary JSON reaches the database. */
const ANYTHING = {
  name: 'anything',
  steps: [{ id: 'echo', function: 'echo', input: { value: '{{ input }}' } }],
};

const SQL = [
  "'",
  "''",
  '"',
  "'; DROP TABLE runs; --",
  "' OR '1'='1",
  '" OR 1=1 --',
  '1; SELECT pg_sleep(10)',
  "'); DELETE FROM workflow_definitions; --",
  '\\',
  '\\x27',
  '%',
  '_',
  '$1',
  '$$',
  '/*',
  '*/',
  '--',
  ';',
  "E'\\\\'",
  'NULL',
  '\u0000',
  'a\u0000b',
  '\ud800',
  '{{ $eval("1") }}',
  '../../etc/passwd',
  '<script>alert(1)</script>',
];

/** Strings as an attacker writes them: SQL metacharacters, control characters, unicode, long ones. */
const nastyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...SQL) },
  { weight: 2, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 50 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 50 }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.string({ maxLength: 10 }), fc.constantFrom(...SQL), fc.string({ maxLength: 10 }))
      .map((parts) => parts.join('')),
  },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 4_000 }).map((n) => 'x'.repeat(n)) },
);

/** Any JSON value whose strings (keys included) are nasty. */
const nastyJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    nastyString,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.dictionary(nastyString, tie('value'), { maxKeys: 5 }),
  ),
})).value;

/** A path segment for any string: its UTF-8 bytes percent-encoded (a lone surrogate becomes U+FFFD). */
const seg = (value: string): string =>
  [...Buffer.from(value, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

/** Nested `depth` levels deep, arrays or objects. */
function nested(depth: number, kind: 'array' | 'object'): string {
  return kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

/** What goes on the wire: a JSON value, or raw bytes that are (mostly) not JSON. */
type Body = { json: unknown } | { raw: string | Uint8Array; type?: string };

const malformed: fc.Arbitrary<Body> = fc.oneof(
  // Truncated, or with a byte changed.
  fc
    .tuple(fc.json(), fc.nat())
    .filter(([text]) => text.length > 1)
    .map(([text, n]) => ({ raw: text.slice(0, 1 + (n % (text.length - 1))) })),
  fc.tuple(fc.json(), fc.nat(), fc.constantFrom('{', '}', '"', ',', ':', '\\', '\u0000', 'x')).map(([text, n, c]) => {
    const at = n % (text.length + 1);
    return { raw: text.slice(0, at) + c + text.slice(at) };
  }),
  fc.constantFrom<Body>(
    { raw: '' },
    { raw: '{' },
    { raw: '{"input": }' },
    { raw: "{'input': 1}" },
    { raw: '{"a":1,}' },
    { raw: 'NaN' },
    { raw: 'undefined' },
    { raw: '\u0000' },
    { raw: '{"a": "\\u0000"}' },
    { raw: '\ufeff{}' },
    { raw: '{"__proto__": {"polluted": true}}' },
    { raw: '{"constructor": {"prototype": {"polluted": true}}}' },
  ),
  fc.uint8Array({ maxLength: 200 }).map((raw) => ({ raw })),
  fc.string().map((raw) => ({ raw })),
  // Deep nesting past any sensible limit.
  fc
    .tuple(fc.integer({ min: 100, max: 5_000 }), fc.constantFrom<'array' | 'object'>('array', 'object'))
    .map(([depth, kind]) => ({ raw: nested(depth, kind) })),
  // The right bytes under a wrong media type.
  fc.constantFrom<Body>(
    { raw: '{}', type: 'text/plain' },
    { raw: '{}', type: 'application/x-www-form-urlencoded' },
    { raw: '{}', type: 'application/json; charset=latin-7' },
    { raw: '<a/>', type: 'application/xml' },
  ),
);

/** The route's own shape with wrong types, nasty strings and unknown fields mixed in. */
function shaped(fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Body> {
  const wrong = fc.oneof(
    nastyJson,
    nastyString,
    fc.constant(null),
    fc.integer(),
    fc.boolean(),
    fc.array(fc.anything()),
  );
  const record = Object.fromEntries(Object.entries(fields).map(([k, a]) => [k, fc.oneof(a, wrong)]));
  return fc
    .tuple(
      fc.record(record, { requiredKeys: [] }),
      fc.option(fc.dictionary(nastyString, nastyJson, { minKeys: 1, maxKeys: 3 }), { freq: 3 }),
    )
    .map(([body, extra]) => ({ json: extra ? { ...extra, ...body } : body }));
}

const anyBody = (fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Body> =>
  fc.oneof(
    { weight: 4, arbitrary: shaped(fields) },
    { weight: 2, arbitrary: nastyJson.map((json) => ({ json })) },
    { weight: 1, arbitrary: fc.anything().map((json) => ({ json })) },
    { weight: 2, arbitrary: malformed },
  );

const uuidLike = fc.oneof(
  fc.uuid(),
  fc.constantFrom(
    'not-a-uuid',
    '00000000-0000-0000-0000-00000000000',
    '00000000-0000-0000-0000-0000000000000',
    'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz',
    "' OR 1=1 --",
    '%00',
    '..%2F..%2Fetc',
    '%27',
    '1',
    '-1',
    '00000000-0000-0000-0000-000000000000',
  ),
  nastyString,
);

describe('gateway fuzz: bad input never breaks it, and nothing is stored for a 4xx', () => {
  let env: TestEnv;
  let coordinator: CoordinatorClient;
  let server: Server;
  let base: string;
  let counts: string;
  let runId: string;
  const seen = { requests: 0, byStatus: new Map<number, number>() };

  const countRows = async (): Promise<string> => {
    const { rows } = await env.pool.query<{ runs: string; events: string; definitions: string }>(
      `SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM events) AS events,
              (SELECT count(*) FROM workflow_definitions) AS definitions`,
    );
    return JSON.stringify(rows[0]);
  };

  /** Sends one body and checks the answer; returns its status. */
  const send = async (method: string, urlPath: string, body: Body, headers: Record<string, string> = {}) => {
    const init: RequestInit = { method, headers: { ...headers } };
    if ('json' in body) {
      let text: string;
      try {
        text = JSON.stringify(body.json) ?? 'null';
      } catch {
        text = 'null'; // fc.anything() can make values JSON cannot carry (BigInt)
      }
      init.body = text;
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    } else {
      init.body = body.raw;
      (init.headers as Record<string, string>)['content-type'] = body.type ?? 'application/json';
    }
    const res = await fetch(`${base}${urlPath}`, init);
    const text = await res.text();
    seen.requests++;
    seen.byStatus.set(res.status, (seen.byStatus.get(res.status) ?? 0) + 1);
    const what = `${method} ${urlPath.slice(0, 200)} → ${res.status} ${text.slice(0, 300)}`;
    if (res.status >= 500 || res.status < 200 || (res.status >= 300 && res.status < 400)) {
      throw new Error(`unexpected status: ${what}`);
    }
    const after = await countRows();
    if (res.status >= 400) {
      let parsed: { error?: { code?: unknown; message?: unknown } };
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        throw new Error(`4xx without a JSON body: ${what}`);
      }
      if (typeof parsed.error?.code !== 'string' || !parsed.error.code) throw new Error(`no error code: ${what}`);
      if (typeof parsed.error.message !== 'string' || !parsed.error.message) throw new Error(`no message: ${what}`);
      if (after !== counts) throw new Error(`a 4xx stored something (${counts} → ${after}): ${what}`);
    }
    counts = after;
    return res.status;
  };

  const check = async (property: fc.IAsyncProperty<any>, runs = RUNS) => {
    await fc.assert(property, {
      numRuns: runs,
      endOnFailure: true,
      ...(PROPERTY_TIME_LIMIT_MS
        ? { interruptAfterTimeLimit: PROPERTY_TIME_LIMIT_MS, markInterruptAsFailure: false }
        : {}),
    });
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
  };

  beforeAll(async () => {
    env = await createTestEnv('fuzz');
    coordinator = coordinatorQueue(env.queues);
    const config: GatewayConfig = { ...env.config, port: 0, apiKeys: [], bodyLimit: BODY_LIMIT };
    const app = createApp({
      pool: env.pool,
      redis: env.redis,
      coordinator,
      config,
      logger: createLogger('fuzz', (process.env.FUZZ_LOG_LEVEL as 'silent') ?? 'silent'),
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (fs.existsSync(INVOICE_YAML)) {
      await saveDefinition(env.pool, parseDefinitionText(fs.readFileSync(INVOICE_YAML, 'utf8'), 'invoice.yaml'));
    }
    await saveDefinition(env.pool, GREET);
    await saveDefinition(env.pool, ANYTHING);
    const started = await fetch(`${base}/v1/workflows/greet/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input: { name: 'Ada' } }),
    });
    runId = ((await started.json()) as { runId: string }).runId;
    counts = await countRows();
  });

  afterAll(async () => {
    console.log(
      `fuzz: ${seen.requests} requests; by status ${JSON.stringify(Object.fromEntries([...seen.byStatus].sort()))}`,
    );
    await new Promise((resolve) => server.close(resolve));
    await coordinator.close();
    await env.cleanup();
  });

  it('POST /invoice/start', async () => {
    await check(
      fc.asyncProperty(anyBody({ customerId: nastyString }), async (body) => {
        await send('POST', '/invoice/start', body);
      }),
    );
  });

  it('POST /v1/workflows/:name/runs', async () => {
    const name = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom('greet', 'anything', 'invoice') },
      { weight: 1, arbitrary: nastyString.filter((s) => s.length > 0) },
    );
    const input = fc.oneof(
      fc.record({ name: nastyString, times: fc.oneof(fc.integer(), nastyString) }, { requiredKeys: [] }),
      nastyJson,
    );
    await check(
      fc.asyncProperty(
        name,
        anyBody({ input, idempotencyKey: nastyString }),
        fc.option(nastyString.filter((s) => /^[\x20-\x7e]*$/.test(s))),
        async (workflow, body, headerKey) => {
          await send(
            'POST',
            `/v1/workflows/${seg(workflow)}/runs`,
            body,
            headerKey === null ? {} : { 'idempotency-key': headerKey },
          );
        },
      ),
    );
  });

  it('PUT /v1/workflows/:name', async () => {
    const step = fc.record(
      {
        id: nastyString,
        function: nastyString,
        input: nastyJson,
        needs: fc.array(nastyString, { maxLength: 3 }),
        if: nastyString,
        retry: nastyJson,
        timeoutMs: fc.oneof(fc.integer(), nastyString),
      },
      { requiredKeys: ['id'] },
    );
    await check(
      fc.asyncProperty(
        fc.oneof(
          fc.constantFrom('fuzzed', 'greet'),
          nastyString.filter((s) => s.length > 0),
        ),
        fc.oneof(
          {
            weight: 4,
            arbitrary: anyBody({ name: nastyString, steps: fc.array(step, { maxLength: 3 }), input: nastyJson }),
          },
          { weight: 1, arbitrary: nastyString.map((raw): Body => ({ raw, type: 'application/yaml' })) },
        ),
        async (name, body) => {
          await send('PUT', `/v1/workflows/${seg(name)}`, body);
        },
      ),
    );
  });

  it('POST /v1/events/:name', async () => {
    await check(
      fc.asyncProperty(
        fc.oneof(
          fc.constantFrom('order.created', 'fuzz.event'),
          nastyString.filter((s) => s.length > 0),
        ),
        anyBody({ payload: nastyJson, idempotencyKey: nastyString }),
        async (name, body) => {
          await send('POST', `/v1/events/${seg(name)}`, body);
        },
      ),
    );
  });

  it('POST /v1/runs/:id/cancel and /retry', async () => {
    const id = fc.oneof({ weight: 1, arbitrary: fc.constant('RUN') }, { weight: 3, arbitrary: uuidLike });
    await check(
      fc.asyncProperty(
        fc.constantFrom('cancel', 'retry'),
        id.filter((s) => s.length > 0),
        anyBody({ compensate: fc.boolean(), input: nastyJson, stepId: nastyString }),
        async (action, rawId, body) => {
          const target = rawId === 'RUN' ? runId : rawId;
          await send('POST', `/v1/runs/${seg(target)}/${action}`, body);
        },
      ),
    );
  });

  it('PUT /v1/schedules/:id', async () => {
    await check(
      fc.asyncProperty(
        nastyString.filter((s) => s.length > 0),
        anyBody({ paused: fc.boolean() }),
        async (id, body) => {
          await send('PUT', `/v1/schedules/${seg(id)}`, body);
        },
      ),
      Math.ceil(RUNS / 2),
    );
  });

  it('GET routes with invalid ids and queries', async () => {
    await check(
      fc.asyncProperty(
        fc.constantFrom(
          '/v1/runs/%s',
          '/v1/runs/%s/logs',
          '/v1/documents/%s',
          '/v1/workflows/%s',
          '/v1/runs?cursor=%s',
        ),
        uuidLike.filter((s) => s.length > 0),
        async (pattern, id) => {
          const res = await fetch(`${base}${pattern.replace('%s', seg(id))}`);
          const text = await res.text();
          if (res.status >= 500) throw new Error(`${pattern} ${id} → ${res.status} ${text.slice(0, 300)}`);
          if (res.status >= 400) expect(JSON.parse(text)).toMatchObject({ error: { message: expect.any(String) } });
        },
      ),
      Math.ceil(RUNS / 2),
    );
  });

  describe('targeted', () => {
    /**
     * Sends a request declaring `declared` body bytes but writes only `sent` of them, and resolves
     * with the status line the server answers while the rest was never sent.
     */
    const partialBody = (route: string, declared: number, sent: number): Promise<string> =>
      new Promise((resolve, reject) => {
        const { hostname, port } = new URL(base);
        const socket = net.connect(Number(port), hostname, () => {
          socket.write(
            `POST ${route} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
              `Content-Length: ${declared}\r\nConnection: close\r\n\r\n`,
          );
          socket.write(`{"input":{"name":"${'x'.repeat(sent)}`);
        });
        let answer = '';
        socket.on('data', (d) => {
          answer += d;
          const line = answer.split('\r\n')[0];
          if (answer.includes('\r\n')) {
            socket.destroy();
            resolve(line);
          }
        });
        socket.on('error', reject);
        socket.on('close', () => reject(new Error(`closed without an answer: ${answer}`)));
      });

    it('deep nesting (10 000 levels) is refused with a 4xx, never a 5xx', async () => {
      for (const kind of ['array', 'object'] as const) {
        for (const [method, route] of [
          ['POST', '/v1/workflows/anything/runs'],
          ['POST', '/v1/events/fuzz.deep'],
          ['PUT', '/v1/workflows/deep'],
          ['POST', '/invoice/start'],
        ] as const) {
          const deep = nested(10_000, kind);
          const wrapped = route.includes('/runs')
            ? `{"input":${deep}}`
            : route.includes('events')
              ? `{"payload":${deep}}`
              : deep;
          const status = await send(method, route, { raw: wrapped });
          expect(status).toBeGreaterThanOrEqual(400);
          expect(status).toBeLessThan(500);
        }
      }
    });

    it('a 50 MB body is a 413, answered without reading it all', async () => {
      // 64 KB of the 50 MB it declares are sent, never the rest: an answer proves it read no more.
      expect(await partialBody('/v1/workflows/greet/runs', 50 * 1024 * 1024, 64 * 1024)).toBe(
        'HTTP/1.1 413 Payload Too Large',
      );
      const res = await fetch(`${base}/v1/workflows/greet/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}'.padEnd(300 * 1024, ' '),
      });
      expect(res.status).toBe(413);
      expect(await res.json()).toMatchObject({ error: { code: 'PAYLOAD_TOO_LARGE', message: expect.any(String) } });
    });

    it('NUL and unpaired surrogates, which PostgreSQL cannot store, are a 400 wherever they are', async () => {
      const cases: [string, string, Body][] = [
        ['POST', '/v1/workflows/anything/runs', { json: { input: { a: 'x\u0000y' } } }],
        ['POST', '/v1/workflows/anything/runs', { json: { input: { 'k\u0000': 1 } } }],
        ['POST', '/v1/events/fuzz.nul', { json: { payload: ['\u0000'] } }],
        // An unpaired surrogate is valid JSON text as an escape; jsonb refuses it like NUL.
        ['POST', '/v1/workflows/anything/runs', { raw: '{"input":{"name":"}[\\ud800 ,_?"}}' }],
        ['POST', '/v1/events/fuzz.nul', { raw: '{"payload":{"\\udc00":1}}' }],
        ['PUT', '/v1/workflows/nul', { raw: 'steps:\n  - id: a\n    function: "x\\0y"\n', type: 'application/yaml' }],
        ['POST', '/v1/workflows/a%00b/runs', { json: {} }],
        ['GET', '/v1/runs?workflow=%00', { json: null }],
      ];
      for (const [method, route, body] of cases) {
        const status = method === 'GET' ? (await fetch(`${base}${route}`)).status : await send(method, route, body);
        expect([route, status]).toEqual([route, 400]);
      }
    });

    it('invalid UUIDs are a 400 INVALID_ID naming the id; unknown ones a 404', async () => {
      for (const bad of ['nope', "1' OR '1'='1", '00000000-0000-0000-0000-00000000000g']) {
        const res = await fetch(`${base}/v1/runs/${seg(bad)}`);
        expect(res.status).toBe(400);
        expect(await res.json()).toMatchObject({
          error: { code: 'INVALID_ID', message: expect.stringContaining('UUID') },
        });
      }
      const unknown = await fetch(`${base}/v1/runs/${crypto.randomUUID()}/cancel`, { method: 'POST' });
      expect(unknown.status).toBe(404);
    });

    it('strings with SQL in them are data, never SQL', async () => {
      const name = "Robert'); DROP TABLE runs; --";
      const res = await fetch(`${base}/v1/workflows/greet/runs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input: { name }, idempotencyKey: "k' OR 1=1 --" }),
      });
      expect(res.status).toBe(202);
      const { runId: id } = (await res.json()) as { runId: string };
      const run = await fetch(`${base}/v1/runs/${id}`);
      expect(((await run.json()) as { input: unknown }).input).toEqual({ name });
      const { rows } = await env.pool.query<{ n: string }>('SELECT count(*) AS n FROM runs');
      expect(Number(rows[0].n)).toBeGreaterThan(0);
    });

    it('expressions cannot reach outside their data', async () => {
      const escapes = [
        '$eval("$$")',
        'constructor',
        'constructor.constructor("return process")()',
        '$$.constructor.constructor("return process")()',
        'process',
        'process.env',
        'require("child_process")',
        '__proto__',
        '$string.constructor',
        '$eval("process.exit(1)")',
        'global',
        'this',
      ];
      const data = { input: { secret: 'only-this' }, steps: {}, run: {} };
      for (const expression of escapes) {
        let value: unknown;
        try {
          value = await evaluate(expression, data);
        } catch (err) {
          // Refusing is fine; it is an ExpressionError, not a crash.
          expect((err as Error).message).toMatch(/failed/);
          continue;
        }
        // Whatever comes back is plain JSON built from the data: no function, no process object.
        const json = JSON.stringify(value) ?? '';
        expect(json).not.toMatch(/"(pid|argv|execPath|versions)"/);
        expect(typeof value).not.toBe('function');
      }
      expect(await resolveTemplate('{{ $keys($) }}', data)).toEqual(['input', 'steps', 'run']);
      // A hostile expression (endless recursion) fails within the guard rails instead of hanging.
      await expect(evaluate('($f := function($x){ $f($x) }; $f(1))', data)).rejects.toThrow(/failed/);

      // Through the API: a definition with these expressions is stored or refused, never a crash.
      for (const expression of escapes) {
        const res = await send('PUT', '/v1/workflows/escape', {
          json: { steps: [{ id: 'a', function: 'echo', input: { v: `{{ ${expression} }}` }, if: expression }] },
        });
        expect([200, 201, 400]).toContain(res);
      }
      expect(process.exitCode ?? 0).toBe(0);
    });
  });
});
