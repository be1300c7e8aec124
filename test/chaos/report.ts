import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ScenarioRow } from './harness';
import { RECONCILE_GRACE_MS, RECONCILE_INTERVAL_MS } from './harness';

const ROOT = path.resolve(__dirname, '..', '..');
const DOC = path.join(ROOT, 'docs', 'RELIABILITY.md');
const BEGIN = '<!-- chaos-table:begin -->';
const END = '<!-- chaos-table:end -->';
/** Every finished scenario run, one JSON row a line (reports/ is not committed): the table is built from it. */
export const RESULTS = process.env.CHAOS_RESULTS ?? path.join(ROOT, 'reports', 'chaos-results.jsonl');

/** Appends a finished scenario run (one seed) to the results file. */
export function recordRow(row: ScenarioRow): void {
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.appendFileSync(RESULTS, `${JSON.stringify({ ...row, at: new Date().toISOString() })}\n`);
}

/** The rows of the results file (the newest row per scenario and seed wins). */
export function readRows(): ScenarioRow[] {
  if (!fs.existsSync(RESULTS)) return [];
  const bySeed = new Map<string, ScenarioRow>();
  for (const line of fs.readFileSync(RESULTS, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const row = JSON.parse(line) as ScenarioRow;
    bySeed.set(`${row.scenario}\u0000${row.seeds.join(',')}`, row);
  }
  return [...bySeed.values()];
}

/** One row per scenario: the repetitions (seeds) summed, the recovery time their maximum. */
export function mergeRows(rows: ScenarioRow[]): ScenarioRow[] {
  const merged = new Map<string, ScenarioRow>();
  for (const r of rows) {
    const m = merged.get(r.scenario);
    const notes = r.notes.map((n) => (r.seeds.length === 1 ? `seed ${r.seeds[0]}: ${n}` : n));
    if (!m) {
      merged.set(r.scenario, { ...r, seeds: [...r.seeds], notes });
      continue;
    }
    for (const key of [
      'requests',
      'ok',
      'failed',
      'unknown',
      'unknownStarted',
      'runs',
      'faults',
      'lost',
      'duplicated',
      'redelivered',
      'stuck',
      'internal',
      'mailResent',
    ] as const)
      m[key] += r[key];
    m.seeds.push(...r.seeds);
    m.recoverySeconds = Math.max(m.recoverySeconds, r.recoverySeconds);
    m.notes.push(...notes);
  }
  for (const m of merged.values()) m.seeds.sort((a, b) => a - b);
  return [...merged.values()];
}

/** The table of `npm run chaos`, in markdown. */
export function renderTable(rows: ScenarioRow[], when = new Date()): string {
  const merged = mergeRows(rows);
  const lines = [
    `Last run: ${when.toISOString().slice(0, 16).replace('T', ' ')} UTC, reconcile interval ${RECONCILE_INTERVAL_MS} ms, grace ${RECONCILE_GRACE_MS} ms.`,
    '',
    '| scenario | seeds | requests | ok | failed | unknown (started) | runs checked | lost | duplicated | re-delivered | stuck | internal | faults | recovery (s, max) | e-mails re-sent | notes |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...merged.map(
      (r) =>
        `| ${r.scenario} | ${r.seeds.join(', ')} | ${r.requests} | ${r.ok} | ${r.failed} | ${r.unknown} (${r.unknownStarted}) | ${r.runs} | ${r.lost} | ${r.duplicated} | ${r.redelivered} | ${r.stuck} | ${r.internal} | ${r.faults} | ${r.recoverySeconds} | ${r.mailResent} | ${r.notes
          .join('; ')
          .replace(/\|/g, '\\|')
          .replace(/\n/g, ' ')
          .slice(0, 600)} |`,
    ),
  ];
  return lines.join('\n');
}

/** Replaces the table between the markers of docs/RELIABILITY.md (the rest of the page is prose). */
export function writeReliabilityTable(rows: ScenarioRow[]): void {
  const doc = fs.readFileSync(DOC, 'utf8');
  const start = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${DOC} lacks the ${BEGIN} … ${END} markers`);
  fs.writeFileSync(DOC, `${doc.slice(0, start + BEGIN.length)}\n${renderTable(rows)}\n${doc.slice(end)}`);
  // The page stays as `npm run lint` (prettier --check) wants it.
  execFileSync(process.execPath, [require.resolve('prettier/bin/prettier.cjs'), '--write', DOC], { stdio: 'ignore' });
}
