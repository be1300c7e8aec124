'use strict';
/** What `npm run bench` holds Baton to (docs/PERFORMANCE.md, issue 16), judged from a run's report. */

const { round } = require('./stats');

/**
 * Issue 16's targets for Baton, from one run's report: burst throughput at least 1.5x Restate's, 2x
 * DBOS's (each DBOS form) and 0.45x the chain's; step → step p50 / p99 at most 2 / 8 ms at 10 % of
 * its own capacity and 8 / 30 ms at 50 %; at the common rate, the lowest step p99 of the durable
 * systems; gateway + coordinator + function peak RSS at most 300 MB.
 */
function issue16Targets(report) {
  const by = new Map(report.systems.map((s) => [s.name, s]));
  const baton = by.get('baton');
  if (!baton) return undefined;
  const targets = [];
  for (const [name, factor] of [
    ['restate', 1.5],
    ['dbos', 2],
    ['dbos-queue', 2],
  ]) {
    const other = by.get(name);
    if (!other) continue;
    const ratio = baton.stepsPerSec && other.stepsPerSec ? round(baton.stepsPerSec / other.stepsPerSec, 2) : null;
    targets.push({
      target: `steps/s >= ${factor}x ${name}`,
      value: ratio,
      met: ratio !== null && ratio >= factor,
    });
  }
  const chain = by.get('bullmq-chain');
  if (chain?.stepsPerSec && baton.stepsPerSec) {
    const ratio = round(baton.stepsPerSec / chain.stepsPerSec, 2);
    targets.push({ target: 'steps/s >= 0.45x bullmq-chain (stretch 0.55x)', value: ratio, met: ratio >= 0.45 });
  }
  for (const [load, p50, p99] of [
    ['10%', 2, 8],
    ['50%', 8, 30],
  ]) {
    const latency = baton.latencyByLoad?.[load]?.stepLatencyMs;
    if (!latency) continue;
    targets.push({
      target: `step p50 <= ${p50} ms and p99 <= ${p99} ms at ${load} load`,
      value: { p50: latency.p50, p99: latency.p99 },
      met: latency.p50 !== null && latency.p50 <= p50 && latency.p99 !== null && latency.p99 <= p99,
    });
  }
  if (baton.rssMb) {
    targets.push({
      target: 'gateway + coordinator + function RSS under burst <= 300 MB',
      value: baton.rssMb,
      met: baton.rssMb <= 300,
    });
  }
  const durable = report.systems.filter((s) => s.durable && s.commonRate && s.valid);
  if (baton.commonRate && durable.length > 1) {
    const p99 = (s) => s.commonRate.stepLatencyMs.p99 ?? Infinity;
    const best = durable.reduce((a, b) => (p99(b) < p99(a) ? b : a));
    targets.push({
      target: `lowest step p99 of the durable systems at ${baton.commonRate.rate} runs/s`,
      value: baton.commonRate.stepLatencyMs.p99,
      lowest: { system: best.name, p99: best.commonRate.stepLatencyMs.p99 },
      met: best.name === 'baton',
    });
  }
  return targets;
}

module.exports = { issue16Targets };
