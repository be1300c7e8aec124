import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { ROOT, shippedSourceFiles } from '../support/sources';

/**
 * Parameterised SQL only. Every `.query(...)` call in the TypeScript sources must take its SQL as a
 * fixed string; values go in the parameter array (`$1`, `$2`, ...). SQL built from a template
 * literal with `${...}` or by string concatenation is refused unless the interpolated expression is
 * in the allow-list below, each with the reason it cannot carry input. The SQL may also be a `const`
 * of the same file (checked the same way) or a `{ text, values }` object (its `text` checked).
 *
 * The scan parses the sources with the TypeScript compiler (not a regex), so multi-line calls, type
 * arguments (`query<Row>(...)`) and queries kept in a variable are all seen.
 */

interface Allowed {
  file: string;
  /** The interpolated expression, as written (`${...}` contents) or the whole operand of a `+`. */
  expression: string;
  why: string;
}

/** The audited exceptions. Add one only with a reason a reviewer can check. */
const ALLOWED: readonly Allowed[] = [
  {
    file: 'engine/src/db/migrate.ts',
    expression: 'client.escapeIdentifier(name)',
    why: 'CREATE DATABASE takes an identifier, which cannot be a bind parameter; escapeIdentifier quotes it (the name comes from DATABASE_URL, not a request)',
  },
  {
    file: 'services/gateway/src/read-model.ts',
    expression: 'RUN_COLUMNS',
    why: 'a module constant: the fixed column list of the runs read model, no input in it',
  },
  {
    file: 'services/gateway/src/read-model.ts',
    expression: "where.length ? `WHERE ${where.join(' AND ')}` : ''",
    why: "listRuns' optional filters: fixed fragments (`workflow_name = $1`, ...) whose values are bound through param(), which returns only a `$n` placeholder",
  },
  {
    file: 'services/gateway/src/read-model.ts',
    expression: "where.join(' AND ')",
    why: "listRunLogs' optional filters: fixed fragments whose values are bound through param(), which returns only a `$n` placeholder",
  },
  {
    file: 'services/gateway/src/read-model.ts',
    expression: 'param(q.limit + 1)',
    why: 'param() binds the value and returns only its `$n` placeholder',
  },
  {
    file: 'services/gateway/src/bulk-store.ts',
    expression: 'MATCHING',
    why: "a module constant: the bulk filter's fixed SELECT, every value bound as $1..$5",
  },
  {
    file: 'services/gateway/src/bulk-store.ts',
    expression: 'OPERATION_COLUMNS',
    why: 'a module constant: the fixed column list of the bulk operations read model, no input in it',
  },
  {
    file: 'engine/src/db/migrate.ts',
    expression: 'query',
    why: "postgrator's execQuery: the SQL of the repository's own migrations/ files, run at deploy time, never request data",
  },
  {
    file: 'engine/src/db/migrate.ts',
    expression: "await fs.readFile(path.join(SEEDS_DIR, 'demo.sql'), 'utf8')",
    why: "the repository's seeds/demo.sql (demo customers), loaded by setup scripts, never request data",
  },
  {
    file: 'functions/create-invoice/src/index.ts',
    expression: 'RETURNING',
    why: 'a module constant: the fixed column list of invoices, no input in it',
  },
];

interface Finding {
  file: string;
  line: number;
  problem: string;
  expression: string;
}

/** Scans one file's text; `file` is its repository-relative path (for the allow-list and messages). */
function scanSource(file: string, text: string, allowed: readonly Allowed[] = ALLOWED): Finding[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const findings: Finding[] = [];
  const isAllowed = (expression: ts.Node) =>
    allowed.some((a) => a.file === file && a.expression === expression.getText(source));
  const lineOf = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;

  /** `const NAME = <initializer>` anywhere in the file (module constants, locals); every one is checked. */
  const constants = new Map<string, ts.Expression[]>();
  const collect = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer) {
      const list = node.parent;
      if (ts.isVariableDeclarationList(list) && list.flags & ts.NodeFlags.Const) {
        constants.set(node.name.text, [...(constants.get(node.name.text) ?? []), node.initializer]);
      }
    }
    ts.forEachChild(node, collect);
  };
  collect(source);

  /** Checks an expression that becomes SQL text; `seen` stops cycles through constants. */
  const checkSql = (expr: ts.Expression, at: ts.Node, seen: Set<string>): void => {
    const report = (problem: string, expression: ts.Node) =>
      findings.push({ file, line: lineOf(at), problem, expression: expression.getText(source) });
    if (ts.isParenthesizedExpression(expr) || ts.isAsExpression(expr) || ts.isSatisfiesExpression(expr)) {
      checkSql(expr.expression, at, seen);
    } else if (ts.isStringLiteral(expr) || ts.isNoSubstitutionTemplateLiteral(expr)) {
      // A fixed string: fine.
    } else if (ts.isTemplateExpression(expr)) {
      for (const span of expr.templateSpans) {
        if (!isAllowed(span.expression)) report('SQL built with a template literal `${...}`', span.expression);
      }
    } else if (ts.isBinaryExpression(expr) && expr.operatorToken.kind === ts.SyntaxKind.PlusToken) {
      for (const side of [expr.left, expr.right]) {
        if (isAllowed(side)) continue;
        const constant = ts.isIdentifier(side) && constants.has(side.text);
        if (
          constant ||
          ts.isStringLiteral(side) ||
          ts.isNoSubstitutionTemplateLiteral(side) ||
          ts.isTemplateExpression(side) ||
          ts.isBinaryExpression(side) ||
          ts.isParenthesizedExpression(side)
        ) {
          checkSql(side, at, seen);
        } else {
          report('SQL built by string concatenation', side);
        }
      }
    } else if (ts.isIdentifier(expr)) {
      const initializers = constants.get(expr.text);
      if (initializers && !seen.has(expr.text)) {
        for (const initializer of initializers) checkSql(initializer, at, new Set([...seen, expr.text]));
      } else if (!isAllowed(expr)) {
        report('SQL text from a variable the scan cannot see is constant', expr);
      }
    } else if (ts.isObjectLiteralExpression(expr)) {
      const textProp = expr.properties.find(
        (p): p is ts.PropertyAssignment => ts.isPropertyAssignment(p) && p.name.getText(source) === 'text',
      );
      if (textProp) checkSql(textProp.initializer, at, seen);
      else report('query config without a `text` property', expr);
    } else if (!isAllowed(expr)) {
      report('SQL text computed at run time', expr);
    }
  };

  const visit = (node: ts.Node): void => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      node.expression.name.text === 'query' &&
      node.arguments.length > 0
    ) {
      checkSql(node.arguments[0], node, new Set());
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return findings;
}

describe('parameterised SQL only', () => {
  const files = shippedSourceFiles().map((f) => path.join(ROOT, f));

  it('finds the sources', () => {
    const relative = files.map((f) => path.relative(ROOT, f));
    expect(relative).toContain('engine/src/runs.ts');
    expect(relative).toContain('services/gateway/src/read-model.ts');
    expect(relative.some((f) => f.startsWith('functions/'))).toBe(true);
    expect(relative.some((f) => f.startsWith('cli/src/'))).toBe(true);
  });

  it('no query is built from strings, except the audited allow-list', () => {
    const findings = files.flatMap((f) => scanSource(path.relative(ROOT, f), fs.readFileSync(f, 'utf8')));
    const shown = findings.map((f) => `${f.file}:${f.line}: ${f.problem}: ${f.expression}`);
    expect(shown).toEqual([]);
  });

  it('every allow-list entry is still used and has a reason', () => {
    for (const entry of ALLOWED) {
      expect(entry.why.length).toBeGreaterThan(20);
      const text = fs.readFileSync(path.join(ROOT, entry.file), 'utf8');
      // Scanned without the entry, the file reports exactly that expression.
      const without = scanSource(
        entry.file,
        text,
        ALLOWED.filter((a) => a !== entry),
      );
      expect(without.map((f) => f.expression)).toContain(entry.expression);
    }
  });

  describe('the scan itself', () => {
    const scan = (code: string) => scanSource('services/x/src/y.ts', code).map((f) => f.problem);

    it('refuses interpolation and concatenation, wherever the SQL is written', () => {
      expect(scan('pool.query(`SELECT * FROM runs WHERE id = ${id}`);')).toHaveLength(1);
      expect(scan('await client.query<Row>(\n  `SELECT ${cols}\n FROM t`,\n  [],\n);')).toHaveLength(1);
      expect(scan("pool.query('SELECT * FROM runs WHERE id = ' + id);")).toHaveLength(1);
      expect(scan("pool.query('SELECT ' + 'a' + name);")).toHaveLength(1);
      expect(scan('const sql = `DELETE FROM t WHERE a = ${a}`;\npool.query(sql, []);')).toHaveLength(1);
      expect(scan('pool.query({ text: `SELECT ${x}`, values: [] });')).toHaveLength(1);
      expect(scan('pool.query(buildSql(input));')).toHaveLength(1);
      // Two constants of one name: each is checked.
      expect(
        scan("function a() { const q = 'SELECT 1'; }\nfunction b() { const q = `SELECT ${x}`; pool.query(q); }"),
      ).toHaveLength(1);
      expect(scan('function f(sql: string) { return pool.query(sql); }')).toHaveLength(1);
    });

    it('accepts fixed SQL with parameters', () => {
      expect(scan("pool.query('SELECT * FROM runs WHERE id = $1', [id]);")).toEqual([]);
      expect(scan('pool.query(`SELECT *\n FROM runs\n WHERE id = $1`, [id]);')).toEqual([]);
      expect(scan("const SQL = 'SELECT 1';\npool.query(SQL);")).toEqual([]);
      expect(scan("const A = 'SELECT 1 ';\nconst B = A + 'FROM t';\npool.query(B);")).toEqual([]);
      expect(scan("pool.query({ text: 'SELECT $1::int', values: [1] });")).toEqual([]);
    });
  });
});
