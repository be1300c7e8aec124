import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The external ledger: an HTTP API outside Baton that the chaos workflows' steps call for their side
 * effects, so that "lost" and "duplicated" are counted where a user would count them — at the
 * receiving end — and not from Baton's own tables.
 *
 * `POST /effect` with an `Idempotency-Key` header and a JSON body `{run, step, …}` is one side effect.
 * The ledger behaves like a real idempotent API (Stripe's, say): the first request with a key
 * performs the effect; a later one with the same key and the same body is a *replay* — answered
 * with the first answer, counted as a raw hit (`redelivered`), not as a second effect. What counts as
 * *duplicated* is what such an API could not absorb:
 * - a key seen with two different bodies (a distinct second effect under the same key), and
 * - one logical effect (run, step — and index, for a forEach item) arriving under two different keys
 *   (the key was not stable).
 *
 * It also serves the outputs the poison scenarios need: `GET /nul` (a JSON string holding U+0000)
 * and `GET /blob?bytes=N` (a JSON body of about N bytes).
 */
export interface LedgerEntry {
  /** Raw POSTs with this key (replays included). */
  hits: number;
  /** Distinct bodies seen under this key: more than one is a duplicated effect. */
  bodies: Set<string>;
  /** The first body (what the effect was). */
  first: Record<string, unknown>;
}

export class Ledger {
  readonly entries = new Map<string, LedgerEntry>();
  /** `run:step` → the keys it arrived under. */
  readonly logical = new Map<string, Set<string>>();
  /** POSTs without a key (a bug in a workflow: counted, never deduplicated). */
  unkeyed = 0;
  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(): Promise<Ledger> {
    const ref: { ledger?: Ledger } = {};
    const server = http.createServer((req, res) => ref.ledger!.handle(req, res));
    server.keepAliveTimeout = 1_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    ref.ledger = new Ledger(server, (server.address() as AddressInfo).port);
    return ref.ledger;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', this.url);
      const reply = (status: number, body: unknown) => {
        const text = JSON.stringify(body);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      if (req.method === 'GET' && url.pathname === '/nul') return reply(200, { text: 'before\u0000after' });
      if (req.method === 'GET' && url.pathname === '/blob') {
        const bytes = Math.min(Number(url.searchParams.get('bytes') ?? 1_000), 50_000_000);
        return reply(200, { blob: 'x'.repeat(Math.max(0, bytes - 12)) });
      }
      if (req.method !== 'POST' || url.pathname !== '/effect') return reply(404, { error: 'not found' });
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        return reply(400, { error: 'body is not JSON' });
      }
      const key = req.headers['idempotency-key'];
      const delayMs = Math.min(Number(body.delayMs ?? 0) || 0, 5_000);
      const answer = () => {
        if (typeof key !== 'string' || !key) {
          this.unkeyed += 1;
          return reply(200, { ...body, replay: false });
        }
        const digest = crypto
          .createHash('sha256')
          .update(JSON.stringify({ ...body, delayMs: undefined }))
          .digest('hex');
        let entry = this.entries.get(key);
        const replay = entry !== undefined;
        if (!entry) {
          entry = { hits: 0, bodies: new Set(), first: body };
          this.entries.set(key, entry);
        }
        entry.hits += 1;
        entry.bodies.add(digest);
        // A forEach item is its own logical effect: (run, step, index).
        const index = body.index === undefined ? '' : `:${String(body.index)}`;
        const logical = `${String(body.run)}:${String(body.step)}${index}`;
        const keys = this.logical.get(logical) ?? new Set<string>();
        keys.add(key);
        this.logical.set(logical, keys);
        // A replay gets the first answer, as an idempotent API answers it.
        reply(200, { ...entry.first, key, replay });
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  }

  /** Did the effect with this key happen (at least once)? */
  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Keys with more than one distinct effect, and logical effects that came under several keys. */
  duplicates(): string[] {
    const out: string[] = [];
    for (const [key, e] of this.entries)
      if (e.bodies.size > 1) out.push(`key ${key}: ${e.bodies.size} distinct bodies`);
    for (const [effect, keys] of this.logical)
      if (keys.size > 1) out.push(`effect ${effect}: under ${keys.size} keys (${[...keys].join(', ')})`);
    if (this.unkeyed) out.push(`${this.unkeyed} effects without an idempotency key`);
    return out;
  }

  /** Raw hits beyond the first per key: the step ran again and the API absorbed it. */
  redelivered(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.hits - 1;
    return n;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
