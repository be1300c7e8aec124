import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { ErrorCode, isErrorCode, runError } from '@baton/workflow';
import { StepErrorCode } from '@baton/sdk';
import { CliErrorCode } from '../../cli/src/error-codes';
import { ROOT, shippedSourceFiles } from '../support/sources';

/**
 * Error codes come from one registry, `ErrorCode` in workflow/src/error-codes.ts, which spreads in the
 * function runtime's own codes from the SDK (`StepErrorCode` in sdk/src/error-codes.ts: the SDK
 * depends on nothing of the engine). The scan parses every TypeScript source (sdk/src, workflow/src, engine/src,
 * services/<name>/src, functions/<name>/src, cli/src) and fails on a quoted code written anywhere
 * else:
 *
 * - a string literal equal to a registry code (`'NOT_FOUND'`): write `ErrorCode.NOT_FOUND`;
 * - an UPPER_SNAKE / UPPERCASE string literal where an error code goes (an argument of
 *   `new …Error(…)` or `errorBody(…)`, a `code:` property, `readonly code = …`, a comparison with
 *   `….code`) that is not in the registry: add it to the registry (with what it means and whether it
 *   is retryable), then use it from there.
 *
 * Other quoted capitals (HTTP methods, signals, Redis and SQL keywords, env variable names, errno
 * values such as `'ECONNRESET'` compared with a Node error's `code`) are not error codes and are not
 * reported unless they sit in one of the positions above.
 */

const REGISTRY = 'workflow/src/error-codes.ts';
/** The runtime's codes, spread into the registry: documented in their own file. */
const SDK_REGISTRY = 'sdk/src/error-codes.ts';
const REGISTRIES = [REGISTRY, SDK_REGISTRY];
/** The CLI ships without @baton/workflow: its own codes are mirrored here (checked below). */
const CLI_MIRROR = 'cli/src/error-codes.ts';
/**
 * A function depends on @baton/sdk only, as one written outside this repository: each mirrors the
 * registry codes it produces in its own `src/error-codes.ts` (checked below).
 */
const FUNCTION_MIRROR = /^functions\/[^/]+\/src\/error-codes\.ts$/;
const isMirror = (file: string) => file === CLI_MIRROR || FUNCTION_MIRROR.test(file);

/** The `ErrorCode` object a function's mirror exports. */
function functionMirror(file: string): Record<string, string> {
  return (require(path.join(ROOT, file)) as { ErrorCode: Record<string, string> }).ErrorCode;
}

interface AllowedFolder {
  /** Repository-relative folder, ending in `/`. */
  folder: string;
  why: string;
}

/**
 * Folders the scan skips, each temporarily and with a reason. Remove an entry as soon as its folder
 * is converted (the last test below fails once the entry is no longer needed).
 */
const ALLOWED_FOLDERS: readonly AllowedFolder[] = [];

/** Codes of Node and its libraries (errno, nodemailer), compared with `err.code`: not Baton's. */
const FOREIGN_CODE = /^E[A-Z0-9]+$/;
const CODE_SHAPED = /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/;

interface Finding {
  file: string;
  line: number;
  literal: string;
  problem: string;
}

/** Whether `node` sits where an error code goes (see the rules at the top). */
function inCodePosition(node: ts.StringLiteralLike): boolean {
  let at: ts.Node = node;
  // `cond ? 'A' : 'B'`, `('A')`, `'A' as const`: look through to the position of the whole.
  while (
    ts.isParenthesizedExpression(at.parent) ||
    ts.isAsExpression(at.parent) ||
    ts.isConditionalExpression(at.parent) ||
    ts.isBinaryExpression(at.parent) ||
    ts.isLiteralTypeNode(at.parent) ||
    ts.isUnionTypeNode(at.parent)
  ) {
    const parent: ts.Node = at.parent;
    if (ts.isBinaryExpression(parent)) {
      const op = parent.operatorToken.kind;
      if (op === ts.SyntaxKind.EqualsEqualsEqualsToken || op === ts.SyntaxKind.ExclamationEqualsEqualsToken) {
        const other = parent.left === at ? parent.right : parent.left;
        return ts.isPropertyAccessExpression(other) && other.name.text === 'code';
      }
      if (op !== ts.SyntaxKind.BarBarToken && op !== ts.SyntaxKind.QuestionQuestionToken) return false;
    }
    at = parent;
  }
  const parent = at.parent;
  if (ts.isNewExpression(parent) && parent.arguments?.includes(at as ts.Expression)) {
    return /Error$/.test(parent.expression.getText());
  }
  if (ts.isCallExpression(parent) && parent.arguments.includes(at as ts.Expression)) {
    return parent.expression.getText() === 'errorBody';
  }
  if ((ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) && parent.initializer === at) {
    return parent.name.getText() === 'code';
  }
  if (ts.isPropertySignature(parent) && parent.type === at) return parent.name.getText() === 'code';
  if (ts.isParameter(parent) && parent.initializer === at) return parent.name.getText() === 'code';
  return false;
}

/** Scans one file's text; `file` is its repository-relative path. */
function scanSource(file: string, text: string): Finding[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const findings: Finding[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) {
      const literal = node.text;
      const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
      if (isErrorCode(literal)) {
        findings.push({ file, line, literal, problem: `quoted code: use ErrorCode.${literal}` });
      } else if (CODE_SHAPED.test(literal) && !FOREIGN_CODE.test(literal) && inCodePosition(node)) {
        findings.push({ file, line, literal, problem: 'error code not in the registry (workflow/src/error-codes.ts)' });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return findings;
}

const allowedFolderOf = (file: string) => ALLOWED_FOLDERS.find((a) => file.startsWith(a.folder));

describe('error codes come from the registry', () => {
  const files = shippedSourceFiles();

  it('finds the sources', () => {
    expect(files).toContain(REGISTRY);
    expect(files).toContain(SDK_REGISTRY);
    expect(files).toContain('services/gateway/src/routes/runs.ts');
    expect(files.some((f) => f.startsWith('functions/'))).toBe(true);
    expect(files.some((f) => f.startsWith('cli/src/'))).toBe(true);
  });

  it('no quoted code outside the registry, except the allowed folders', () => {
    const findings = files
      .filter((f) => !REGISTRIES.includes(f) && !isMirror(f) && !allowedFolderOf(f))
      .flatMap((f) => scanSource(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));
    expect(findings.map((f) => `${f.file}:${f.line}: '${f.literal}': ${f.problem}`)).toEqual([]);
  });

  it('every allowed folder has a reason and is still needed', () => {
    for (const entry of ALLOWED_FOLDERS) {
      expect(entry.folder.endsWith('/')).toBe(true);
      expect(entry.why.length).toBeGreaterThan(10);
      const inFolder = files.filter((f) => f.startsWith(entry.folder));
      const findings = inFolder.flatMap((f) => scanSource(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));
      // Once the folder is converted this fails: remove the entry.
      expect({ folder: entry.folder, findings: findings.length > 0 }).toEqual({ folder: entry.folder, findings: true });
    }
  });

  describe('the registry', () => {
    it('maps each name to the same string', () => {
      for (const [name, code] of Object.entries(ErrorCode)) expect(code).toBe(name);
    });

    it('says for each code what it means and whether it is retryable', () => {
      const documented = new Map<string, string>();
      for (const file of REGISTRIES) {
        const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
        const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
        const visit = (node: ts.Node): void => {
          if (ts.isPropertyAssignment(node) && ts.isObjectLiteralExpression(node.parent)) {
            const comments = ts.getLeadingCommentRanges(text, node.getFullStart()) ?? [];
            documented.set(node.name.getText(source), comments.map((c) => text.slice(c.pos, c.end)).join('\n'));
          }
          ts.forEachChild(node, visit);
        };
        visit(source);
      }
      expect([...documented.keys()].sort()).toEqual(Object.keys(ErrorCode).sort());
      const undocumented = [...documented].filter(([, comment]) => !/\/\*\*.*retryable/is.test(comment));
      expect(undocumented.map(([name]) => name)).toEqual([]);
    });

    it("the CLI's mirror holds registry codes only, as the same strings", () => {
      for (const [name, code] of Object.entries(CliErrorCode))
        expect(code).toBe(ErrorCode[name as keyof typeof ErrorCode]);
    });

    it('holds every code of the SDK, as the same strings', () => {
      for (const [name, code] of Object.entries(StepErrorCode))
        expect(ErrorCode[name as keyof typeof ErrorCode]).toBe(code);
    });

    it("each function's mirror holds registry codes only, as the same strings", () => {
      const mirrors = files.filter((f) => FUNCTION_MIRROR.test(f));
      expect(mirrors).toContain('functions/fetch-orders/src/error-codes.ts');
      for (const file of mirrors) {
        const codes = functionMirror(file);
        expect(Object.keys(codes).length).toBeGreaterThan(0);
        for (const [name, code] of Object.entries(codes))
          expect({ file, name, code }).toEqual({ file, name, code: ErrorCode[name as keyof typeof ErrorCode] });
      }
    });

    it('keeps the documented public codes', () => {
      // README, docs/WORKFLOWS.md, docs/SECURITY.md and the OpenAPI document name these: they must not change.
      const documented = [
        'CANCELLED',
        'WORKFLOW_TIMEOUT',
        'EVENT_TIMEOUT',
        'STEP_TIMEOUT',
        'OUTPUT_TOO_LARGE',
        'UNSTORABLE_OUTPUT',
        'EXPRESSION_FAILED',
        'REDIS_UNAVAILABLE',
        'NOT_READY',
        'INVALID_REQUEST',
        'INVALID_ID',
        'NOT_FOUND',
        'BODY_TOO_DEEP',
        'PAYLOAD_TOO_LARGE',
        'RATE_LIMITED',
        'UNAUTHORIZED',
        'FORBIDDEN',
        'INTERNAL',
        'CUSTOMER_NOT_FOUND',
        'INVOICE_NOT_FOUND',
        'EMAIL_REJECTED',
        'HTTP_429',
        'HTTP_5XX',
        'HTTP_NETWORK',
        'HTTP_TIMEOUT',
        'HTTP_STATUS',
        'HTTP_ADDRESS_REFUSED',
        'HTTP_BODY_TOO_LARGE',
        'HTTP_TOO_MANY_REDIRECTS',
        'HTTP_BAD_REDIRECT',
      ];
      for (const code of documented) expect(isErrorCode(code)).toBe(true);
    });

    it('builds a run error that names no step', () => {
      expect(runError(ErrorCode.CANCELLED, 'run cancelled on request')).toEqual({
        stepId: '',
        function: '',
        attempt: 0,
        code: 'CANCELLED',
        message: 'run cancelled on request',
        nonRetryable: true,
      });
    });
  });

  describe('the scan itself', () => {
    const scan = (code: string) => scanSource('services/x/src/y.ts', code).map((f) => f.literal);

    it('reports quoted codes, known anywhere and unknown where a code goes', () => {
      expect(scan("throw new NonRetryableError('NOT_FOUND', 'x');")).toEqual(['NOT_FOUND']);
      expect(scan("const x = ['NOT_FOUND'];")).toEqual(['NOT_FOUND']);
      expect(scan("throw new NonRetryableError('SOMETHING_NEW', 'x');")).toEqual(['SOMETHING_NEW']);
      expect(scan("throw new ApiError(400, 'NEWCODE', 'x');")).toEqual(['NEWCODE']);
      expect(scan("const e = { code: 'NEW_CODE', message: 'x' };")).toEqual(['NEW_CODE']);
      expect(scan("class E { readonly code = 'NEW_CODE'; }")).toEqual(['NEW_CODE']);
      expect(scan("if (err.code === 'NEW_CODE') {}")).toEqual(['NEW_CODE']);
      expect(scan("res.json(errorBody('NEW_CODE', 'x'));")).toEqual(['NEW_CODE']);
      expect(scan("const c = String(e.code ?? 'NEW_CODE');")).toEqual([]);
      expect(scan("type R = { code: 'NEW_A' | 'NEW_B' };")).toEqual(['NEW_A', 'NEW_B']);
      expect(scan("function f(code = 'NEW_CODE') {}")).toEqual(['NEW_CODE']);
    });

    it('leaves other capitals alone', () => {
      expect(scan("redis.scan(0, 'MATCH', 'p:*', 'COUNT', 500);")).toEqual([]);
      expect(scan("process.on('SIGTERM', stop); client.query('BEGIN');")).toEqual([]);
      expect(scan("const v = process.env['LOG_LEVEL'];")).toEqual([]);
      expect(scan("if (e.code === 'ECONNRESET') {}")).toEqual([]);
      expect(scan('const m = `failed: UNSTORABLE_OUTPUT`;')).toEqual([]);
      expect(scan('throw new NonRetryableError(ErrorCode.NOT_FOUND, "x");')).toEqual([]);
    });
  });
});
