import type { ScenarioRow } from './harness';
import { writeReliabilityTable } from './report';
import { ALL_SCENARIOS } from './scenarios';

/**
 * `npm run chaos`: every scenario on a fresh system, one after another; the table of results goes to
 * docs/RELIABILITY.md (also when a scenario fails: the table is the evidence). CHAOS_ONLY=<text>[,<text>…]
 * runs the scenarios whose name contains one of them (the document is then left alone).
 */
const SCENARIO_TIMEOUT_MS = 300_000;
const only = process.env.CHAOS_ONLY?.toLowerCase().split(',');
const selected = ALL_SCENARIOS.filter((s) => !only || only.some((part) => s.name.toLowerCase().includes(part)));
const rows: ScenarioRow[] = [];

afterAll(() => {
  // Only a complete run (no CHAOS_ONLY, no -t filter) rewrites the table.
  if (!only && rows.length === selected.length) writeReliabilityTable(rows);
});

describe('chaos: every scenario', () => {
  for (const { name, run } of selected) {
    it(
      name,
      async () => {
        const { row, report, violations } = await run();
        rows.push(row);
        process.stdout.write(`chaos ${JSON.stringify(row)}\n`);
        if (row.lost || row.duplicated || row.stuck || report.crashed.length) {
          throw new Error(`invariants broken:\n${JSON.stringify({ row, report, violations }, null, 2)}`);
        }
      },
      SCENARIO_TIMEOUT_MS,
    );
  }
});
