import path from 'node:path';
import type jsonata from 'jsonata';
import workerpool from 'workerpool';
import { parseEnv } from '@baton/sdk';
import {
  expressionEnv,
  expressionLimitsFrom,
  type ExpressionSandboxLimits,
  DEFAULT_EXPRESSION_LIMITS,
} from './expression-limits';
import * as core from './expression-worker.js';
import { ErrorCode } from './error-codes';
import { storableJson } from './storable';

/**
 * JSONata expressions and `{{ }}` templates. JSONata evaluates over the data it is given and nothing
 * else: no JavaScript `eval`, no `Function`, no access to the process.
 *
 * Template rules: a string that is exactly `{{ expr }}` becomes the expression's value with its JSON
 * type; `{{ expr }}` inside longer text interpolates (objects as JSON, missing values as '').
 *
 * The sandbox. JSONata's own guard (EXPRESSION_LIMITS) is checked between evaluation steps, so it
 * cannot stop one long step — a backtracking regex (`$match(s, /^(a+)+$/)`) — nor a huge string
 * (`$pad("", 200000000)`); and the coordinator evaluates while it holds run row locks. So any
 * expression not proven cheap (`isCheap`: paths, literals, comparisons, arithmetic — no function,
 * regex, range, filter or concatenation) runs in a child process of a small pool (workerpool), one
 * request per expression or whole template (the data is sent once), with hard bounds a single step
 * cannot defeat: `BATON_EXPRESSION_TIMEOUT_MS` of evaluation (the process is killed), a V8 heap of
 * `BATON_EXPRESSION_MAX_MB` (a larger allocation kills that process only; worker threads'
 * `resourceLimits` do not contain a single huge allocation, which aborts the whole host process), and
 * results of at most `BATON_EXPRESSION_MAX_RESULT_BYTES` serialized. Each failure is an
 * ExpressionError (EXPRESSION_FAILED); the pool replaces a killed process.
 */

export const EXPRESSION_LIMITS = core.EXPRESSION_LIMITS;

/** A compiled expression, cached by its text (also checks definitions and runs `transform` steps). */
export function compileExpression(expression: string): jsonata.Expression {
  return core.compile(expression);
}

export class ExpressionError extends Error {
  readonly code = ErrorCode.EXPRESSION_FAILED;
  constructor(
    readonly expression: string,
    message: string,
  ) {
    super(`expression '${expression}' failed: ${message}`);
  }
}

/** Every expression inside a template value, with its path, for validation. */
export function templateExpressions(value: unknown, path: string): { path: string; expression: string }[] {
  return core.templateExpressions(value, path);
}

/**
 * Results are made storable (workflow/src/storable.ts): a template may produce a NUL character
 * (`$base64decode("AA==")`) that PostgreSQL would refuse in the step input it becomes, failing the
 * batch that planned it.
 */
export async function evaluate(expression: string, data: unknown): Promise<unknown> {
  if (isCheap(expression))
    return storableJson(await onThisThread(() => core.evaluate(expression, data, limits().maxResultBytes)));
  return storableJson(await inSandbox('expression', expression, data, expression));
}

/** Resolves every template in `value` (recursively) against `data`: one sandbox request at most. */
export async function resolveTemplate(value: unknown, data: unknown): Promise<unknown> {
  if (allCheap(value)) {
    return storableJson(await onThisThread(() => core.resolveTemplate(value, data, limits().maxResultBytes)));
  }
  return storableJson(await inSandbox('template', value, data, core.describeTemplate(value)));
}

/** Items resolved per sandbox request by `resolveTemplateEach`: each request stays within the time limit. */
export const TEMPLATE_EACH_CHUNK = 200;

/**
 * Resolves `value` once per item of `items`, with `item` and `index` added to `data` (a forEach
 * step's inputs). A template that needs the sandbox is sent with the shared data once per chunk of
 * TEMPLATE_EACH_CHUNK items, not once per item: a run whose steps hold a 10 000-item list would
 * otherwise copy it 10 000 times.
 */
export async function resolveTemplateEach(
  value: unknown,
  data: Record<string, unknown>,
  items: unknown[],
  /** Each item's `index` (default: its position in `items`). */
  indexes: number[] = items.map((_, i) => i),
): Promise<unknown[]> {
  const results: unknown[] = [];
  if (allCheap(value)) {
    const { maxResultBytes } = limits();
    for (let index = 0; index < items.length; index++) {
      const each = { ...data, item: items[index], index: indexes[index] };
      results.push(storableJson(await onThisThread(() => core.resolveTemplate(value, each, maxResultBytes))));
    }
    return results;
  }
  for (let first = 0; first < items.length; first += TEMPLATE_EACH_CHUNK) {
    const chunk = items.slice(first, first + TEMPLATE_EACH_CHUNK);
    const resolved = (await inSandbox(
      'templateEach',
      value,
      { data, items: chunk, indexes: indexes.slice(first, first + TEMPLATE_EACH_CHUNK) },
      core.describeTemplate(value),
    )) as unknown[];
    for (const r of resolved) results.push(storableJson(r));
  }
  return results;
}

/** `if:` conditions: JSONata truthiness, with a missing value counting as false. */
export async function evaluateCondition(expression: string, data: unknown): Promise<boolean> {
  const result = await evaluate(expression, data);
  if (Array.isArray(result)) return result.length > 0;
  return Boolean(result);
}

// --- the fast path: expressions cheap enough for the calling thread -------------------------------

const BINARY_OPERATORS = new Set(['=', '!=', '<', '<=', '>', '>=', 'and', 'or', '+', '-', '*', '/', '%']);
/** AST properties of the nodes allowed; any other (filters, grouping, sorting, focus…) is not cheap. */
const NODE_KEYS = new Set([
  'type',
  'value',
  'position',
  'steps',
  'lhs',
  'rhs',
  'condition',
  'then',
  'else',
  'expression',
  'expressions',
  'keepArray',
  'keepSingletonArray',
]);

interface AstNode {
  type: string;
  value?: unknown;
  [key: string]: unknown;
}

const cheapness = new Map<string, boolean>();
const INLINE = /\{\{([\s\S]+?)\}\}/g;

/** Whether every expression in a template is cheap (a walk that allocates nothing per value). */
function allCheap(value: unknown): boolean {
  if (typeof value === 'string') {
    if (!value.includes('{{')) return true;
    for (const match of value.matchAll(INLINE)) if (!isCheap(match[1].trim())) return false;
    return true;
  }
  if (Array.isArray(value)) return value.every(allCheap);
  if (value && typeof value === 'object') {
    for (const key in value) if (!allCheap((value as Record<string, unknown>)[key])) return false;
  }
  return true;
}

/**
 * True when the expression can only walk its data, compare and compute numbers: its time and memory
 * are bounded by the data's size, so it is evaluated here, without a round trip to the sandbox. An
 * expression that does not compile counts as cheap: evaluating it fails at once with its syntax error.
 */
export function isCheap(expression: string): boolean {
  let cheap = cheapness.get(expression);
  if (cheap === undefined) {
    try {
      cheap = cheapNode(core.compile(expression).ast() as unknown as AstNode);
    } catch {
      cheap = true;
    }
    if (cheapness.size > 5_000) cheapness.clear();
    cheapness.set(expression, cheap);
  }
  return cheap;
}

function cheapNode(node: AstNode | undefined): boolean {
  if (!node || typeof node !== 'object') return false;
  if (Object.keys(node).some((key) => !NODE_KEYS.has(key))) return false;
  switch (node.type) {
    case 'string':
    case 'number':
    case 'value':
      return true;
    case 'variable':
      // `$` (the context) and `$$` (the root); named variables may hold functions.
      return node.value === '' || node.value === '$';
    case 'name':
      return true;
    case 'path':
      return (node.steps as AstNode[]).every((s) => (s.type === 'name' || s.type === 'variable') && cheapNode(s));
    case 'binary':
      return (
        BINARY_OPERATORS.has(node.value as string) && cheapNode(node.lhs as AstNode) && cheapNode(node.rhs as AstNode)
      );
    case 'condition':
      return (
        cheapNode(node.condition as AstNode) &&
        cheapNode(node.then as AstNode) &&
        (node.else === undefined || cheapNode(node.else as AstNode))
      );
    case 'unary':
      return node.value === '-' && cheapNode(node.expression as AstNode);
    case 'block':
      return (node.expressions as AstNode[]).every(cheapNode);
    default:
      return false;
  }
}

async function onThisThread<T>(evaluation: () => Promise<T>): Promise<T> {
  try {
    return await evaluation();
  } catch (err) {
    throw asExpressionError(err);
  }
}

function asExpressionError(err: unknown): unknown {
  const failure = err as Partial<core.EvaluationFailure> | undefined;
  if (failure?.expressionFailed) return new ExpressionError(failure.expression ?? '', failure.reason ?? '');
  return err;
}

// --- the sandbox -------------------------------------------------------------------------------------

/** A child process is given this long to start before the time limit applies (a busy host, a cold disk). */
const STARTUP_ALLOWANCE_MS = 30_000;
const WORKER_SCRIPT = path.join(__dirname, 'expression-worker.js');

/** Sandbox processes at most; as many requests are sent to them at once (`sandboxSlot`). */
const SANDBOX_PROCESSES = 2;

let configured: ExpressionSandboxLimits | undefined;
let pool: workerpool.Pool | undefined;
let inFlight = 0;

function limits(): ExpressionSandboxLimits {
  configured ??= expressionLimitsFrom(parseEnv(expressionEnv));
  return configured;
}

/** The limits in force: `BATON_EXPRESSION_*` (config.ts), unless `configureExpressions` set others. */
export function expressionLimits(): ExpressionSandboxLimits {
  return { ...limits() };
}

/** Sets other limits (tests, embedding); the sandbox processes are replaced to apply a new memory bound. */
export async function configureExpressions(overrides: Partial<ExpressionSandboxLimits>): Promise<void> {
  await closeExpressionPool();
  configured = { ...DEFAULT_EXPRESSION_LIMITS, ...limits(), ...overrides };
}

/**
 * Ends the sandbox processes (after the evaluations under way). Call it on shutdown; the next
 * evaluation starts a new pool. Idle sandbox processes never keep a process alive anyway.
 */
export async function closeExpressionPool(): Promise<void> {
  const closing = pool;
  pool = undefined;
  await closing?.terminate();
}

function sandbox(): workerpool.Pool {
  if (!pool) {
    const { maxMemoryMb } = limits();
    pool = workerpool.pool(WORKER_SCRIPT, {
      workerType: 'process',
      maxWorkers: SANDBOX_PROCESSES,
      // A process killed for its time limit is busy: do not wait for it to answer first.
      workerTerminateTimeout: 100,
      // Its stderr says why it died (a V8 heap overflow), and stays out of the host's log.
      emitStdStreams: true,
      forkOpts: {
        execArgv: [`--max-old-space-size=${maxMemoryMb}`],
        // Nothing of the host's environment (credentials) is needed to evaluate JSONata.
        env: Object.fromEntries(
          ['PATH', 'TZ', 'LANG', 'LC_ALL'].flatMap((k) => (process.env[k] === undefined ? [] : [[k, process.env[k]]])),
        ),
      },
    });
  }
  return pool;
}

/** Sandbox processes hold the event loop only while an evaluation is under way (workerpool internals). */
function holdEventLoop(target: workerpool.Pool, hold: boolean): void {
  const handlers = (target as unknown as { workers?: { worker?: unknown }[] }).workers ?? [];
  for (const { worker } of handlers) {
    const child = worker as
      | {
          ref?: () => void;
          unref?: () => void;
          channel?: { ref?: () => void; unref?: () => void } | null;
          stdout?: { ref?: () => void; unref?: () => void } | null;
          stderr?: { ref?: () => void; unref?: () => void } | null;
        }
      | undefined;
    for (const handle of [child, child?.channel, child?.stdout, child?.stderr]) {
      if (hold) handle?.ref?.();
      else handle?.unref?.();
    }
  }
}

class SandboxDied extends Error {
  constructor(
    readonly outOfMemory: boolean,
    cause: unknown,
  ) {
    super(`the expression sandbox process died: ${(cause as Error)?.message?.split('\n')[0] ?? String(cause)}`);
  }
}

type SandboxKind = 'expression' | 'template' | 'templateEach';

async function inSandbox(kind: SandboxKind, subject: unknown, data: unknown, described: string) {
  const { maxMemoryMb } = limits();
  for (let attempt = 1; ; attempt++) {
    try {
      return await sandboxRequest(kind, subject, data, described);
    } catch (err) {
      if (!(err instanceof SandboxDied)) throw err;
      if (err.outOfMemory) throw new ExpressionError(described, `used more than ${maxMemoryMb} MB of memory`);
      // A process killed from outside (the OOM killer, an operator) is not the expression's fault
      // once; killing a fresh one again is.
      if (attempt >= 2) throw new ExpressionError(described, `killed its sandbox process twice (${err.message})`);
    }
  }
}

/**
 * Requests beyond SANDBOX_PROCESSES wait here, never in workerpool's own queue: a task queued there
 * behind a process that died (a `$pad` past the memory bound) was never started, its timeout never
 * armed (workerpool arms it only once a task starts), so its caller waited for ever. Three gateway
 * requests starting such runs at once hung (the chaos suite's hostile-expression scenario).
 */
let busySlots = 0;
const slotWaiters: (() => void)[] = [];

async function sandboxSlot(): Promise<() => void> {
  if (busySlots >= SANDBOX_PROCESSES) await new Promise<void>((resolve) => slotWaiters.push(resolve));
  else busySlots++;
  return () => {
    const next = slotWaiters.shift();
    // The slot passes to the next waiter as it is (busySlots unchanged).
    if (next) next();
    else busySlots--;
  };
}

async function sandboxRequest(kind: SandboxKind, subject: unknown, data: unknown, described: string): Promise<unknown> {
  const release = await sandboxSlot();
  try {
    return await sandboxRequestInSlot(kind, subject, data, described);
  } finally {
    release();
  }
}

async function sandboxRequestInSlot(
  kind: SandboxKind,
  subject: unknown,
  data: unknown,
  described: string,
): Promise<unknown> {
  const { timeoutMs, maxResultBytes } = limits();
  const target = sandbox();
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  let stderr = '';
  inFlight++;
  const task = target.exec('run', [kind, subject, data, maxResultBytes], {
    on: (payload: unknown) => {
      if (payload === 'started') {
        timer = setTimeout(() => {
          timedOut = true;
          task.cancel();
        }, timeoutMs);
      } else if (typeof (payload as { stderr?: unknown })?.stderr === 'string' && stderr.length < 16_384) {
        stderr += (payload as { stderr: string }).stderr;
      }
    },
  });
  // A request that never starts (no process could be started) fails as an ordinary error: retried
  // with the transaction, not blamed on the run.
  task.timeout(STARTUP_ALLOWANCE_MS + timeoutMs);
  holdEventLoop(target, true);
  try {
    return await task;
  } catch (err) {
    if (timedOut) throw new ExpressionError(described, `timed out after ${timeoutMs} ms`);
    const failure = asExpressionError(err);
    if (failure instanceof ExpressionError) throw failure;
    if (err instanceof workerpool.Promise.TimeoutError) {
      throw new Error(`the expression sandbox did not start within ${STARTUP_ALLOWANCE_MS} ms`, { cause: err });
    }
    const message = (err as Error)?.message ?? '';
    if (message.includes('Worker terminated Unexpectedly') || message.includes('Workerpool Worker error')) {
      throw new SandboxDied(/heap out of memory|SIGABRT/i.test(stderr + message), err);
    }
    throw err;
  } finally {
    clearTimeout(timer);
    inFlight--;
    if (inFlight === 0 && pool === target) holdEventLoop(target, false);
  }
}
