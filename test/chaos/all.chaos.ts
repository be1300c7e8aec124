import { readRows, recordRow, writeReliabilityTable } from './report';
import { ALL_SCENARIOS } from './scenarios';

/**
 * `npm run chaos`: every scenario on a fresh system, CHAOS_REPEATS times (3 by default) with the seeds
 * CHAOS_SEED, CHAOS_SEED + 1, … (1 by default); each under CHAOS_RUNS run starts (200) at CHAOS_RATE
 * per second (10). Every finished run is appended to reports/chaos-results.jsonl (CHAOS_RESULTS), also
 * when it broke an invariant (the row is the evidence). A complete run rewrites the table of
 * docs/RELIABILITY.md from that file; so does any run with CHAOS_WRITE_TABLE=1 (a matrix run in
 * parts). CHAOS_ONLY=<text>[,<text>…] runs the scenarios whose name contains one of them.
 */
const SCENARIO_TIMEOUT_MS = 900_000;
const only = process.env.CHAOS_ONLY?.toLowerCase().split(',');
const repeats = Number(process.env.CHAOS_REPEATS ?? 3);
const firstSeed = Number(process.env.CHAOS_SEED ?? 1);
const seeds = Array.from({ length: repeats }, (_, i) => firstSeed + i);
const selected = ALL_SCENARIOS.filter((s) => !only || only.some((part) => s.name.toLowerCase().includes(part)));
let finished = 0;

afterAll(() => {
  if ((!only && finished === selected.length * seeds.length) || process.env.CHAOS_WRITE_TABLE)
    writeReliabilityTable(readRows());
});

// Seed-major: every scenario once, then again with the next seed (a run cut short still covers all).
describe('chaos: every scenario', () => {
  for (const seed of seeds) {
    for (const { name, run } of selected) {
      it(
        `${name} (seed ${seed})`,
        async () => {
          const { row, report, violations } = await run()(seed);
          recordRow(row);
          finished += 1;
          process.stdout.write(`chaos ${JSON.stringify(row)}\n`);
          if (row.lost || row.duplicated || row.stuck || row.internal || report.crashed.length) {
            const evidence = { row, violations: violations.slice(0, 20), crashed: report.crashed };
            throw new Error(`invariants broken:\n${JSON.stringify(evidence, null, 2)}`);
          }
        },
        SCENARIO_TIMEOUT_MS,
      );
    }
  }
});
