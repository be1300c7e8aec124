'use strict';
/**
 * Baton's per-hop breakdown of the step → step latency, read off `baton_step_hop_seconds{hop}` (the
 * coordinator's and the function processes' /metrics): a snapshot before a phase and one after, the
 * difference of their buckets, and from it each hop's mean (exact: _sum / _count) and p50/p99
 * (interpolated within a bucket, as Prometheus' histogram_quantile does).
 *
 * The path of a report to the next step's handler: inbox_wait → transaction → queue_wait →
 * handler_start (contiguous, up to the commit → add call, which does no I/O). `enqueue` (the add's
 * round trip) overlaps queue_wait, which starts when the coordinator creates the job (and may end
 * before the add's answer reaches the coordinator): it is shown, not added to the path.
 */

const HOPS = ['inbox_wait', 'transaction', 'enqueue', 'queue_wait', 'handler_start'];
/** The hops that follow each other on a step's path; their means add up to (nearly) step → step. */
const PATH = ['inbox_wait', 'transaction', 'queue_wait', 'handler_start'];

const LINE = /^baton_step_hop_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/;

/** Prometheus text → Map hop → {buckets: Map le → cumulative count, sum, count}. */
function parseHops(text) {
  const hops = new Map();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map(([, k, v]) => [k, v]));
    if (!labels.hop) continue;
    if (!hops.has(labels.hop)) hops.set(labels.hop, { buckets: new Map(), sum: 0, count: 0 });
    const h = hops.get(labels.hop);
    const value = Number(m[3]);
    if (m[1] === 'bucket') h.buckets.set(labels.le, (h.buckets.get(labels.le) ?? 0) + value);
    else h[m[1]] += value;
  }
  return hops;
}

/** Several processes' snapshots added up (the coordinator and each function process). */
function mergeHops(list) {
  const out = new Map();
  for (const hops of list) {
    for (const [hop, h] of hops) {
      if (!out.has(hop)) out.set(hop, { buckets: new Map(), sum: 0, count: 0 });
      const o = out.get(hop);
      o.sum += h.sum;
      o.count += h.count;
      for (const [le, n] of h.buckets) o.buckets.set(le, (o.buckets.get(le) ?? 0) + n);
    }
  }
  return out;
}

/** What was observed between two snapshots. */
function diffHops(before, after) {
  const out = new Map();
  for (const [hop, a] of after) {
    const b = before.get(hop) ?? { buckets: new Map(), sum: 0, count: 0 };
    const buckets = new Map([...a.buckets].map(([le, n]) => [le, n - (b.buckets.get(le) ?? 0)]));
    out.set(hop, { buckets, sum: a.sum - b.sum, count: a.count - b.count });
  }
  return out;
}

/** histogram_quantile: linear within the bucket that holds the rank; the +Inf bucket answers its lower bound. */
function quantile(h, q) {
  if (!h.count) return null;
  const bounds = [...h.buckets]
    .map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n])
    .sort((x, y) => x[0] - y[0]);
  const rank = q * h.count;
  let prevLe = 0;
  let prevN = 0;
  for (const [le, n] of bounds) {
    if (n >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevN)) / Math.max(1e-12, n - prevN);
    }
    prevLe = le;
    prevN = n;
  }
  return prevLe;
}

/** Each hop's count, mean, p50 and p99 in ms. */
function summarizeHops(diff) {
  const out = {};
  for (const hop of HOPS) {
    const h = diff.get(hop);
    if (!h || !h.count) continue;
    out[hop] = {
      count: h.count,
      mean: (1000 * h.sum) / h.count,
      p50: 1000 * quantile(h, 0.5),
      p99: 1000 * quantile(h, 0.99),
    };
  }
  return out;
}

module.exports = { HOPS, PATH, parseHops, mergeHops, diffHops, summarizeHops, quantile };
