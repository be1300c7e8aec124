/**
 * Failpoints: fault injection at named points of the function runtime, for the chaos suite
 * (test/chaos/, docs/RELIABILITY.md). Inert unless the `BATON_FAILPOINT` environment variable is set
 * — never set it in production.
 *
 *   BATON_FAILPOINT=<point>:<action>:<when>[,<point>:<action>:<when>…]
 *
 * - `point`: `after-handler` — a step handler returned successfully; its outcome report has not
 *   been sent yet (the side effect happened, Baton does not know it).
 * - `action`: `exit` — `process.kill(process.pid, 'SIGKILL')`: the process dies at once, as if
 *   kill -9'd or OOM-killed (no report, no job completion, no cleanup; the job stays active in Redis
 *   until BullMQ's stalled-job check hands it to another worker, which runs the handler again).
 * - `when`: an integer N ≥ 1 fires the N-th time the point is reached in this process (`3`, or
 *   `nth=3`); a decimal is a probability per pass (`0.05`, or `p=0.05`; `1.0` is every time).
 *
 * `BATON_FAILPOINT_SEED` (an integer) makes the probability draws reproducible; without it they use
 * Math.random. Before dying the process writes `failpoint <point> fired: <action>` to stderr.
 */
export type FailpointName = 'after-handler';

interface Rule {
  point: string;
  action: 'exit';
  nth?: number;
  probability?: number;
}

let parsedFrom: string | undefined;
let rules: Rule[] = [];
const passes = new Map<string, number>();
let draw: () => number = Math.random;

/** Parses a `BATON_FAILPOINT` value; throws on a malformed one (a typo must not make a test pass). */
export function parseFailpoints(spec: string): Rule[] {
  return spec
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const [point, action, when, ...rest] = part.split(':');
      if (!point || action !== 'exit' || when === undefined || rest.length)
        throw new Error(`BATON_FAILPOINT: '${part}' is not <point>:exit:<nth or probability>`);
      const value = when.replace(/^(nth|p)=/, '');
      if (/^\d+$/.test(value) && !when.startsWith('p=')) {
        const nth = Number(value);
        if (nth < 1) throw new Error(`BATON_FAILPOINT: '${part}': nth must be at least 1`);
        return { point, action, nth };
      }
      const probability = Number(value);
      if (!Number.isFinite(probability) || probability <= 0 || probability > 1)
        throw new Error(`BATON_FAILPOINT: '${part}': a probability is in (0, 1]`);
      return { point, action, probability };
    });
}

/** A small seeded generator (mulberry32), so a seeded failpoint fires at the same passes every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Reached at a failpoint: does nothing unless BATON_FAILPOINT names this point and its turn came. */
export function failpoint(point: FailpointName, env: NodeJS.ProcessEnv = process.env): void {
  const spec = env.BATON_FAILPOINT;
  if (!spec) return;
  if (spec !== parsedFrom) {
    rules = parseFailpoints(spec);
    parsedFrom = spec;
    passes.clear();
    const seed = Number(env.BATON_FAILPOINT_SEED);
    draw = env.BATON_FAILPOINT_SEED && Number.isFinite(seed) ? seededRandom(seed) : Math.random;
  }
  const pass = (passes.get(point) ?? 0) + 1;
  passes.set(point, pass);
  for (const rule of rules) {
    if (rule.point !== point) continue;
    const fire = rule.nth !== undefined ? pass === rule.nth : draw() < (rule.probability ?? 0);
    if (!fire) continue;
    // Pipes and files are written synchronously on Linux: the line is out before the process dies.
    process.stderr.write(`failpoint ${point} fired: ${rule.action} (pass ${pass})\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
