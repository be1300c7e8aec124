import fs from 'node:fs';
import path from 'node:path';

/**
 * docs/ARCHITECTURE.md stays true: every folder and module it names in backticks exists.
 *
 * The rules, in order:
 * 1. Candidates are backticked spans outside fenced code blocks, made only of path characters, that
 *    contain a `/` or end in a source or doc extension (.ts .js .sql .md .yaml .yml .json). Other
 *    spans (identifiers, env variables, URLs such as `/v1/runs/:id`, keys) are not paths.
 * 2. Placeholders and globs are skipped: a span with `<`, `>`, `*`, `{`, `}` or `NNN` in it
 *    (`functions/<name>/`, `*-store.ts`, `NNN.do.<what>.sql`). So are the names of a table row whose
 *    first cell is such a placeholder: they are relative to it (`src/index.ts` of `functions/<name>/`).
 * 3. A name is looked up from the repository root; else from its scope: the folders named in the
 *    first cell of its table row, and the folder a `## <folder>/ — …` heading names (each also with
 *    `src/` appended); else inside a folder or next to a file found earlier in the same row
 *    (`env.ts` after `support/`, `expression-worker.js` after `expressions.ts`).
 */

const ROOT = path.resolve(__dirname, '../..');
const DOC = 'docs/ARCHITECTURE.md';

const PATH_LIKE = /^[\w.<>*{}-]+(\/[\w.<>*{}-]*)*$/;
const EXTENSION = /\.(ts|js|sql|md|ya?ml|json)$/;
const PLACEHOLDER = /[<>*{}]|NNN/;

interface Named {
  line: number;
  name: string;
}

const exists = (relative: string) => fs.existsSync(path.join(ROOT, relative));
const spansOf = (text: string) => [...text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]);
const isCandidate = (span: string) => PATH_LIKE.test(span) && (span.includes('/') || EXTENSION.test(span));

/** The names of `text` (a Markdown document) that do not exist, by the rules above. */
function missingPaths(text: string): { checked: Named[]; missing: Named[] } {
  const checked: Named[] = [];
  const missing: Named[] = [];
  let headingScope: string[] = [];
  let fenced = false;
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    if (raw.trimStart().startsWith('```')) {
      fenced = !fenced;
      return;
    }
    if (fenced) return;
    const heading = /^#{2,}\s+([\w./-]+\/)\s/.exec(raw);
    if (/^#{1,}\s/.test(raw)) headingScope = heading ? [heading[1]] : [];

    let rowScope: string[] = [];
    let spans = spansOf(raw);
    if (raw.startsWith('|')) {
      const firstCell = raw.split('|')[1] ?? '';
      const firstSpans = spansOf(firstCell).filter((s) => s.endsWith('/'));
      // Rule 2: a row about a placeholder folder names paths relative to it.
      if (firstSpans.some((s) => PLACEHOLDER.test(s))) spans = spansOf(firstCell);
      rowScope = firstSpans.filter((s) => !PLACEHOLDER.test(s));
    }
    const bases = [...rowScope, ...headingScope].flatMap((b) => [b, path.posix.join(b, 'src/')]);
    const foundDirs: string[] = [];
    for (const name of spans) {
      if (!isCandidate(name) || PLACEHOLDER.test(name)) continue;
      checked.push({ line, name });
      const found = [name, ...[...bases, ...foundDirs].map((b) => path.posix.join(b, name))].find(exists);
      // A folder: names after it may be inside it; a file: next to it.
      if (found) foundDirs.push(found.endsWith('/') ? found : path.posix.dirname(found));
      else missing.push({ line, name });
    }
  });
  return { checked, missing };
}

describe('docs/ARCHITECTURE.md names only paths that exist', () => {
  const text = fs.readFileSync(path.join(ROOT, DOC), 'utf8');

  it('every folder and module it names exists', () => {
    const { checked, missing } = missingPaths(text);
    expect(checked.length).toBeGreaterThan(40);
    expect(missing.map((m) => `${DOC}:${m.line}: \`${m.name}\` not found`)).toEqual([]);
  });

  describe('the rules', () => {
    const missingIn = (doc: string) => missingPaths(doc).missing.map((m) => m.name);
    const checkedIn = (doc: string) => missingPaths(doc).checked.map((m) => m.name);

    it('looks names up from the root, the row and heading scopes, and next to earlier paths', () => {
      expect(missingIn('See `engine/src/runs.ts` and `README.md`.')).toEqual([]);
      expect(missingIn('| `services/gateway/` | `http/security.ts`, `public/` |')).toEqual([]);
      expect(missingIn('## engine/ — the library\n\n| `x` | `workflow/store.ts` |')).toEqual([]);
      expect(missingIn('## workflow/ — x\n\n| `expressions.ts` | `expression-worker.js` |')).toEqual([]);
      expect(missingIn('See `engine/src/gone.ts`; `nowhere/`.')).toEqual(['engine/src/gone.ts', 'nowhere/']);
      expect(missingIn('## engine/ — x\n\n| `x` | `gone.ts` |')).toEqual(['gone.ts']);
      expect(missingIn('| `test/` | `unit/` (`sql-safety.test.ts`), `support/` (`env.ts`) |')).toEqual([]);
    });

    it('skips placeholders, globs, code blocks and what is not a path', () => {
      expect(checkedIn('`functions/<name>/`, `*-store.ts`, `NNN.do.<what>.sql`, `{fn.<function>}`')).toEqual([]);
      expect(checkedIn('| `functions/<name>/` | `src/index.ts`, `src/main.ts` |')).toEqual([]);
      expect(checkedIn('```\n`engine/src/gone.ts`\n```')).toEqual([]);
      expect(checkedIn('`/v1/runs/:id`, `BATON_QUEUE_PREFIX`, `runs.metadata.trace`, `POST /v1/runs`')).toEqual([]);
    });
  });
});
