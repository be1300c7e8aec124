import dns from 'node:dns';
import http from 'node:http';
import net from 'node:net';
import zlib from 'node:zlib';
import { BatonError, CancelledError, NonRetryableError } from '@baton/workflow';
import { saveDefinition } from '@baton/engine';
import { createHttpRequest } from '../../functions/http-request/src/index';
import { createTransform } from '../../functions/transform/src/index';
import { createTestContext } from '../support/context';
import { startEngine, type Engine } from '../support/engine';
import { createTestEnv, waitFor, type TestEnv } from '../support/env';
import { closedPort, failure } from '../support/failures';

/**
 * The built-in http-request and transform functions against local HTTP servers on 127.0.0.1: through
 * the real engine (coordinator + function runtime on PostgreSQL and Redis) for retries, Retry-After
 * and step timeouts, and by calling the handler directly for the SSRF guard and response handling.
 * Every address these tests make requests to is on the loopback interface; refused ones are refused
 * before any connection is made.
 */

interface Hit {
  path: string;
  method: string;
  at: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const hits: Hit[] = [];
const counts = new Map<string, number>();
/** When the server saw the socket of a /slow/<key> request close. */
const slowClosed = new Map<string, number>();
const slowTimers = new Set<NodeJS.Timeout>();
let port = 0;

function handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
  const url = new URL(req.url ?? '/', 'http://test');
  const path = url.pathname;
  hits.push({ path, method: req.method ?? '', at: Date.now(), headers: req.headers, body });
  const n = (counts.get(path) ?? 0) + 1;
  counts.set(path, n);
  const json = (status: number, value: unknown, headers: Record<string, string> = {}): void => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(value));
  };
  const [, route, key] = path.split('/');
  switch (route) {
    case 'flaky': // 503 twice, then fine
      return n <= 2 ? json(503, { error: 'busy' }) : json(200, { ok: true, hits: n });
    case 'missing':
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('no such thing');
    case 'throttle': // 429 with Retry-After: 1 once, then fine
      return n === 1 ? json(429, { error: 'slow down' }, { 'retry-after': '1' }) : json(200, { ok: true, hits: n });
    case 'slow': {
      req.socket.once('close', () => {
        slowClosed.set(key, Date.now());
        clearTimeout(timer);
        slowTimers.delete(timer);
      });
      const timer = setTimeout(() => res.end('too late'), 20_000);
      slowTimers.add(timer);
      return;
    }
    case 'json':
      return json(200, { hello: 'world', list: [1, 2, 3] });
    case 'text':
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      return void res.end('just text');
    case 'gzip':
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      return void res.end(zlib.gzipSync(JSON.stringify({ compressed: true })));
    case 'big': {
      // 64 KiB, chunked (no Content-Length), or declared up front with ?declared
      const chunk = Buffer.alloc(4096, 'x');
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      if (url.searchParams.has('declared')) headers['content-length'] = String(16 * chunk.length);
      res.writeHead(200, headers);
      for (let i = 0; i < 16; i++) res.write(chunk);
      return void res.end();
    }
    case 'to': // redirect to the given URL
      res.writeHead(302, { location: url.searchParams.get('url') ?? '/' });
      return void res.end();
    case 'hop': {
      const left = Number(key);
      if (left > 0) {
        res.writeHead(302, { location: `/hop/${left - 1}` });
        return void res.end();
      }
      return json(200, { arrived: true });
    }
    case 'echo':
      return json(200, {
        method: req.method,
        contentType: req.headers['content-type'] ?? null,
        authorization: req.headers.authorization ?? null,
        body: body === '' ? null : (JSON.parse(body) as unknown),
      });
    default:
      res.writeHead(500);
      return void res.end();
  }
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
});

const base = (path: string): string => `http://127.0.0.1:${port}${path}`;
const hitsOf = (path: string): Hit[] => hits.filter((h) => h.path === path);

/** Addresses on this machine: the only ones a test may connect to. */
const isLocal = (ip: string): boolean =>
  /^127\./.test(ip) || /^::ffff:127\./i.test(ip) || ip === '::1' || ip === '0.0.0.0';

type LookupCallback = (err: Error | null, address: string | dns.LookupAddress[], family?: number) => void;
type Lookup = (hostname: string, options: object, callback: LookupCallback) => void;

/**
 * A safety net under the SSRF tests: should the guard ever let a refused address through, the
 * connection fails here (an IP before connecting, a name after resolving) instead of leaving the
 * machine. It would surface as HTTP_NETWORK, so the test expecting HTTP_ADDRESS_REFUSED still fails.
 */
function installSafetyNet(): () => void {
  const realConnect = net.Socket.prototype.connect;
  const guarded = function (this: net.Socket, ...args: unknown[]): net.Socket {
    const normalized = Array.isArray(args[0]) ? (args[0] as unknown[]) : args;
    const options = normalized[0] as (net.TcpNetConnectOpts & { lookup?: Lookup }) | undefined;
    if (options && typeof options === 'object' && !('path' in options && options.path)) {
      const host = options.host ?? 'localhost';
      if (net.isIP(host)) {
        if (!isLocal(host)) throw new Error(`test safety net: refused to connect to ${host}`);
      } else {
        const inner: Lookup = options.lookup ?? (dns.lookup as unknown as Lookup);
        options.lookup = ((hostname: string, lookupOptions: object, callback: LookupCallback) =>
          inner(hostname, lookupOptions, (err, address, family) => {
            const found = err ? [] : Array.isArray(address) ? address.map((a) => a.address) : [address];
            const outside = found.find((a) => !isLocal(a));
            if (outside) callback(new Error(`test safety net: ${hostname} resolved to ${outside}`), '');
            else callback(err, address, family);
          })) as net.TcpNetConnectOpts['lookup'];
      }
    }
    return (realConnect as (...a: unknown[]) => net.Socket).apply(this, args);
  };
  net.Socket.prototype.connect = guarded as typeof realConnect;
  return () => {
    net.Socket.prototype.connect = realConnect;
  };
}

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  for (const timer of slowTimers) clearTimeout(timer);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('http-request and transform through the engine', () => {
  let env: TestEnv;
  let engine: Engine;
  const fast = { backoff: { type: 'fixed', delayMs: 20, maxDelayMs: 20, jitter: 0 } };

  beforeAll(async () => {
    env = await createTestEnv('http_request');
    const call = (id: string, retry: object, extra: object = {}) => ({
      name: id,
      steps: [{ id: 'call', function: 'http-request', input: { url: '{{ input.url }}' }, retry, ...extra }],
    });
    await saveDefinition(env.pool, call('http-retrying', { attempts: 3, ...fast }));
    await saveDefinition(env.pool, call('http-throttled', { attempts: 2, ...fast }));
    await saveDefinition(env.pool, call('http-slow', { attempts: 1 }, { timeoutMs: 300 }));
    await saveDefinition(env.pool, {
      name: 'shape-and-post',
      steps: [
        {
          id: 'shape',
          function: 'transform',
          input: {
            expression: '{"customer": customerId, "openCents": $sum(orders[status = "open"].amountCents)}',
            data: '{{ input }}',
          },
        },
        {
          id: 'post',
          function: 'http-request',
          input: { url: '{{ input.echoUrl }}', method: 'POST', body: '{{ steps.shape.output.result }}' },
        },
      ],
      output: '{{ steps.post.output.body }}',
    });
    engine = await startEngine(env, [createHttpRequest({ allowedHosts: ['127.0.0.1'] }), createTransform()]);
  });

  afterAll(async () => {
    await engine?.close();
    await env?.cleanup();
  });

  const attemptsOf = async (runId: string) =>
    (
      await env.pool.query<{ attempt: number; status: string; code: string | null; started_at: Date }>(
        `SELECT a.attempt, a.status, a.error->>'code' AS code, a.started_at
           FROM step_attempts a JOIN step_executions e ON e.id = a.step_execution_id
          WHERE e.run_id = $1 ORDER BY a.attempt`,
        [runId],
      )
    ).rows;

  it('retries a 503 twice, then succeeds on the third attempt', async () => {
    const runId = await engine.start('http-retrying', { url: base('/flaky/a') });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.output).toEqual({
      call: {
        status: 200,
        headers: expect.objectContaining({ 'content-type': expect.any(String) }),
        body: { ok: true, hits: 3 },
      },
    });
    expect((await attemptsOf(runId)).map(({ attempt, status, code }) => ({ attempt, status, code }))).toEqual([
      { attempt: 1, status: 'failed', code: 'HTTP_5XX' },
      { attempt: 2, status: 'failed', code: 'HTTP_5XX' },
      { attempt: 3, status: 'succeeded', code: null },
    ]);
    expect(hitsOf('/flaky/a')).toHaveLength(3);
  });

  it('fails a 404 at once: one attempt, non-retryable, the status in the message', async () => {
    const runId = await engine.start('http-retrying', { url: base('/missing') });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ stepId: 'call', attempt: 1, code: 'HTTP_STATUS', nonRetryable: true });
    expect(run.error.message).toContain('404');
    expect(await attemptsOf(runId)).toHaveLength(1);
    expect(hitsOf('/missing')).toHaveLength(1);
  });

  it('waits for Retry-After (1 s) after a 429 although the backoff is 20 ms', async () => {
    const runId = await engine.start('http-throttled', { url: base('/throttle/a') });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    const attempts = await attemptsOf(runId);
    expect(attempts.map((a) => a.code)).toEqual(['HTTP_429', null]);
    const [first, second] = hitsOf('/throttle/a');
    expect(second.at - first.at).toBeGreaterThanOrEqual(950);
    expect(attempts[1].started_at.getTime() - attempts[0].started_at.getTime()).toBeGreaterThanOrEqual(950);
  });

  it('aborts the request at the step timeout: the server sees its socket closed', async () => {
    const t0 = Date.now();
    const runId = await engine.start('http-slow', { url: base('/slow/step') });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('failed');
    expect(run.error).toMatchObject({ code: 'STEP_TIMEOUT' });
    const closedAt = await waitFor(async () => slowClosed.get('step'), 5_000, 'the server to see the socket closed');
    expect(closedAt - t0).toBeLessThan(3_000);
    expect(hitsOf('/slow/step')).toHaveLength(1);
  });

  it("feeds a transform step's result into the next step's template", async () => {
    const runId = await engine.start('shape-and-post', {
      echoUrl: base('/echo'),
      customerId: 'cust-01',
      orders: [
        { amountCents: 1200, status: 'open' },
        { amountCents: 800, status: 'paid' },
        { amountCents: 500, status: 'open' },
      ],
    });
    const run = await engine.waitForRun(runId);
    expect(run.status).toBe('succeeded');
    expect(run.output).toEqual({
      method: 'POST',
      contentType: 'application/json',
      authorization: null,
      body: { customer: 'cust-01', openCents: 1700 },
    });
    const steps = await env.pool.query('SELECT step_id, output FROM step_executions WHERE run_id = $1', [runId]);
    expect(steps.rows.find((r) => r.step_id === 'shape')?.output).toEqual({
      result: { customer: 'cust-01', openCents: 1700 },
    });
  });
});

describe('http-request handler', () => {
  let removeSafetyNet: () => void;
  beforeAll(() => {
    removeSafetyNet = installSafetyNet();
  });
  afterAll(() => removeSafetyNet());

  const guarded = createHttpRequest();
  const allowed = createHttpRequest({ allowedHosts: ['127.0.0.1'], maxBodyBytes: 16 * 1024 });
  type Definition = ReturnType<typeof createHttpRequest>;
  const call = (definition: Definition, input: unknown, ctx = createTestContext()) =>
    definition.handler(definition.input.parse(input), ctx);

  const expectRefused = async (definition: Definition, url: string): Promise<BatonError> => {
    const before = hits.length;
    const err = await failure(call(definition, { url }));
    expect(err).toBeInstanceOf(NonRetryableError);
    expect(err.code).toBe('HTTP_ADDRESS_REFUSED');
    expect(err.message).toContain('HTTP_REQUEST_ALLOWED_HOSTS');
    expect(hits.length).toBe(before);
    return err;
  };

  it('refuses loopback by IP', async () => {
    const err = await expectRefused(guarded, base('/json'));
    expect(err.message).toContain('127.0.0.1');
    await expectRefused(guarded, `http://[::1]:${port}/json`);
    await expectRefused(guarded, `http://[::ffff:127.0.0.1]:${port}/json`);
    await expectRefused(guarded, `http://0.0.0.0:${port}/json`);
    // Listing 127.0.0.1 does not let other spellings of loopback through.
    await expectRefused(allowed, `http://127.0.0.2:${port}/json`);
  });

  it('refuses the cloud metadata addresses, even with an allow-list', async () => {
    await expectRefused(guarded, 'http://169.254.169.254/latest/meta-data');
    await expectRefused(allowed, 'http://169.254.169.254/latest/meta-data');
    await expectRefused(guarded, 'http://[fd00:ec2::254]/latest/meta-data');
  });

  it('refuses a DNS name after resolving it to loopback', async () => {
    const err = await expectRefused(guarded, `http://localhost:${port}/json`);
    expect(err.message).toMatch(/localhost \((127\.0\.0\.1|::1)\)/);
    // 127.0.0.1 is allowed, but `localhost` is another host.
    await expectRefused(allowed, `http://localhost:${port}/json`);
  });

  it('refuses a redirect from an allowed host to a private address', async () => {
    for (const target of [`http://localhost:${port}/json`, `http://127.0.0.2:${port}/json`]) {
      const before = hitsOf('/to').length;
      const err = await failure(call(allowed, { url: base(`/to?url=${encodeURIComponent(target)}`) }));
      expect(err.code).toBe('HTTP_ADDRESS_REFUSED');
      expect(err.message).toContain(new URL(target).hostname);
      expect(hitsOf('/to')).toHaveLength(before + 1);
    }
    expect(hitsOf('/json')).toHaveLength(0);
  });

  it('allows 127.0.0.1 when it is listed, and parses a JSON response', async () => {
    const ctx = createTestContext();
    const out = await call(allowed, { url: base('/json') }, ctx);
    expect(out.status).toBe(200);
    expect(out.body).toEqual({ hello: 'world', list: [1, 2, 3] });
    expect(out.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(ctx.lines).toContainEqual(
      expect.objectContaining({ message: 'http request done', data: expect.objectContaining({ status: 200 }) }),
    );
  });

  it('returns text as text, decompresses gzip, and gives HEAD no body', async () => {
    expect((await call(allowed, { url: base('/text') })).body).toBe('just text');
    expect((await call(allowed, { url: base('/gzip') })).body).toEqual({ compressed: true });
    const head = await call(allowed, { url: base('/json'), method: 'HEAD' });
    expect(head).toMatchObject({ status: 200, body: null });
  });

  it('sends a JSON body and headers, and never logs them', async () => {
    const ctx = createTestContext();
    const out = await call(
      allowed,
      {
        url: `${base('/echo')}?api_key=k-123`,
        method: 'POST',
        headers: { Authorization: 'Bearer very-secret-token' },
        body: { card: 'secret-body-value' },
      },
      ctx,
    );
    expect(out.body).toEqual({
      method: 'POST',
      contentType: 'application/json',
      authorization: 'Bearer very-secret-token',
      body: { card: 'secret-body-value' },
    });
    const logged = JSON.stringify(ctx.lines);
    expect(logged).toContain('/echo');
    expect(logged).not.toMatch(/very-secret-token|secret-body-value|k-123/);
  });

  it('follows up to 5 redirects between allowed hosts and refuses a 6th', async () => {
    await expect(call(allowed, { url: base('/hop/5') })).resolves.toMatchObject({ body: { arrived: true } });
    const err = await failure(call(allowed, { url: base('/hop/6') }));
    expect(err).toBeInstanceOf(NonRetryableError);
    expect(err.code).toBe('HTTP_TOO_MANY_REDIRECTS');
    // A redirect whose status is expected is returned, not followed.
    await expect(call(allowed, { url: base('/hop/1'), expectStatus: 302 })).resolves.toMatchObject({
      status: 302,
      headers: { location: '/hop/0' },
    });
  });

  it('cuts a body over the limit with HTTP_BODY_TOO_LARGE', async () => {
    for (const url of [base('/big'), base('/big?declared')]) {
      const err = await failure(call(allowed, { url }));
      expect(err).toBeInstanceOf(NonRetryableError);
      expect(err.code).toBe('HTTP_BODY_TOO_LARGE');
      expect(err.message).toMatch(/larger than 16384 bytes \(HTTP_REQUEST_MAX_BODY_BYTES\)/);
    }
    // The default limit (5 MiB) takes the same 64 KiB body.
    const roomy = createHttpRequest({ allowedHosts: ['127.0.0.1'] });
    expect(((await call(roomy, { url: base('/big') })).body as string).length).toBe(65_536);
  });

  it('gives up at its own timeoutMs with a retryable HTTP_TIMEOUT, closing the socket', async () => {
    const t0 = Date.now();
    const err = await failure(call(allowed, { url: base('/slow/own'), timeoutMs: 200 }));
    expect(err.code).toBe('HTTP_TIMEOUT');
    expect(err.retryable).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await waitFor(async () => slowClosed.get('own'), 3_000, 'the server to see the socket closed');
  });

  it('stops when ctx.signal aborts (cancel), with the signal’s reason', async () => {
    const ctx = createTestContext();
    const pending = call(allowed, { url: base('/slow/cancel') }, ctx);
    await waitFor(async () => (hitsOf('/slow/cancel').length ? true : undefined), 3_000, 'the request to arrive');
    ctx.controller.abort(new CancelledError());
    const err = await failure(pending);
    expect(err).toBeInstanceOf(CancelledError);
    await waitFor(async () => slowClosed.get('cancel'), 3_000, 'the server to see the socket closed');
  });

  it('reports a refused connection as a retryable HTTP_NETWORK error', async () => {
    const err = await failure(call(allowed, { url: `http://127.0.0.1:${await closedPort()}/` }));
    expect(err.code).toBe('HTTP_NETWORK');
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/ECONNREFUSED/);
  });
});
