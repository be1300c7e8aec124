'use strict';
/** Small statistics helpers (nearest-rank percentiles, medians). */

function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

function median(values) {
  const present = values.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
  if (present.length === 0) return null;
  const sorted = [...present].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function round(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Checks that every triggered run ran its 4 steps exactly once each, in order, and returns the
 * latencies: trigger -> step 1 and step k -> step k+1 (handler start to handler start), in ms.
 */
function checkRuns(runs, byKey) {
  const problems = { lost: 0, duplicated: 0, reordered: 0, retried: 0 };
  const triggerLatency = [];
  const stepLatency = [];
  let lastStep = -Infinity;
  let complete = 0;
  for (const run of runs) {
    const steps = byKey.get(run.key) ?? [];
    const seen = steps.map((s) => s.step).sort();
    if (steps.some((s) => s.attempt > 1)) problems.retried += 1;
    if (seen.length < 4 || new Set(seen).size < 4) {
      if (new Set(seen).size < 4) problems.lost += 1;
      else problems.duplicated += 1;
      continue;
    }
    if (seen.length > 4) {
      problems.duplicated += 1;
      continue;
    }
    const byStep = [1, 2, 3, 4].map((k) => steps.find((s) => s.step === k).at);
    if (byStep.some((at, i) => i > 0 && at < byStep[i - 1])) {
      problems.reordered += 1;
      continue;
    }
    complete += 1;
    triggerLatency.push(byStep[0] - run.sentAt);
    for (let i = 1; i < 4; i += 1) stepLatency.push(byStep[i] - byStep[i - 1]);
    lastStep = Math.max(lastStep, byStep[3]);
  }
  return { complete, problems, triggerLatency, stepLatency, lastStep };
}

module.exports = { percentile, median, round, checkRuns };
