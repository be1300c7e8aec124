import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ScenarioRow } from './harness';
import { RECONCILE_GRACE_MS, RECONCILE_INTERVAL_MS } from './harness';

const DOC = path.resolve(__dirname, '..', '..', 'docs', 'RELIABILITY.md');
const BEGIN = '<!-- chaos-table:begin -->';
const END = '<!-- chaos-table:end -->';

/** The table of `npm run chaos`, in markdown. */
export function renderTable(rows: ScenarioRow[], when = new Date()): string {
  const lines = [
    `Last run: ${when.toISOString().slice(0, 16).replace('T', ' ')} UTC, reconcile interval ${RECONCILE_INTERVAL_MS} ms, grace ${RECONCILE_GRACE_MS} ms.`,
    '',
    '| scenario | runs | faults injected | lost | duplicated | stuck | time to recover (s) | e-mails re-sent | notes |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.runs} | ${r.faults} | ${r.lost} | ${r.duplicated} | ${r.stuck} | ${r.recoverySeconds} | ${r.mailResent} | ${r.notes.join('; ').replace(/\|/g, '\\|')} |`,
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
