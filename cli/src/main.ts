#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ApiError, CliError, Client } from './client';
import { CliErrorCode } from './error-codes';
import { parseValue, readDefinitionFile } from './input';
import { newFunctionProject } from './scaffold';
import { errorText, formatDuration, operationLines, runFrame, startNote, tagText, type Style } from './render';
import type {
  EventPublished,
  FunctionControl,
  FunctionSummary,
  Operation,
  Run,
  RunAccepted,
  WorkflowSaved,
} from './types';
import { executionCount, getRun, isTerminal, printLogs, watchRun } from './watch';

/**
 * `baton`: the gateway's API from a terminal. BATON_URL (default http://localhost:3000) and
 * BATON_API_KEY say where and as whom; `--json` prints the API's answers as they are.
 *
 * Exit codes: 0 done; 1 an error (the API's message and details are printed), 2 a watched run
 * ended in another state than `succeeded`.
 */

const DEFAULT_URL = 'http://localhost:3000';
/** A watched run that did not end as expected (`succeeded`; `cancelled` for `runs cancel --watch`). */
const EXIT_RUN_NOT_SUCCEEDED = 2;

interface GlobalOptions {
  url?: string;
  json?: boolean;
}

interface Context {
  client: Client;
  json: boolean;
  style: Style;
}

function contextOf(cmd: Command): Context {
  const opts = cmd.optsWithGlobals<GlobalOptions>();
  const json = opts.json === true;
  return {
    client: new Client({
      baseUrl: opts.url ?? (process.env.BATON_URL || DEFAULT_URL),
      apiKey: process.env.BATON_API_KEY || undefined,
    }),
    json,
    style: { color: !json && process.stdout.isTTY === true && !process.env.NO_COLOR },
  };
}

const print = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};
const printJson = (value: unknown): void => print(JSON.stringify(value, null, 2));
const warn = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** `--tag key=value`, repeatable: collected in order. */
function collectTag(value: string, previous: string[] = []): string[] {
  const eq = value.indexOf('=');
  if (eq < 1) throw new InvalidArgumentError('use key=value, e.g. --tag customer=cust-01');
  return [...previous, value];
}

/** `key=value` pairs as the API's tags object. */
function tagObject(tags: string[]): Record<string, string> {
  return Object.fromEntries(tags.map((t) => [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)]));
}

const runPath = (id: string, suffix = ''): string => `/v1/runs/${encodeURIComponent(id)}${suffix}`;

/** Follows a run to its end; the exit code says whether it succeeded. */
/** Polls until the run exists (a debounced trigger's run: 404 until its window fires). */
async function untilRunExists(ctx: Context, runId: string, intervalMs: number): Promise<void> {
  for (;;) {
    try {
      await getRun(ctx.client, runId);
      return;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

async function watchAndExit(
  ctx: Context,
  runId: string,
  intervalMs: number,
  opts: { expected?: string; isNewEnd?: (run: Run) => boolean } = {},
): Promise<void> {
  const expected = opts.expected ?? 'succeeded';
  const run = await watchRun(
    ctx.client,
    runId,
    { write: (t) => process.stdout.write(t), isTTY: process.stdout.isTTY, columns: process.stdout.columns },
    { intervalMs, style: ctx.style, quiet: ctx.json, ...(opts.isNewEnd ? { isNewEnd: opts.isNewEnd } : {}) },
  );
  if (ctx.json) printJson(run);
  if (run.status !== expected) process.exitCode = EXIT_RUN_NOT_SUCCEEDED;
}

interface BulkOptions {
  workflow?: string;
  status?: string;
  tag?: string[];
  createdAfter?: string;
  createdBefore?: string;
  rate?: number;
  dryRun?: boolean;
  watch?: boolean;
  interval: number;
}

const operationPath = (id: string, suffix = ''): string => `/v1/operations/${encodeURIComponent(id)}${suffix}`;

/** Polls an operation until it is no longer running, printing its progress when it changes. */
async function watchOperation(ctx: Context, id: string, intervalMs: number): Promise<void> {
  let last = '';
  for (;;) {
    const { body } = await ctx.client.request<Operation>('GET', operationPath(id));
    const lines = operationLines(body);
    if (!ctx.json && lines[0] !== last) print(lines[0]);
    last = lines[0];
    if (body.status !== 'running') {
      if (ctx.json) printJson(body);
      else for (const line of lines.slice(1)) print(line);
      if (body.status !== 'succeeded') process.exitCode = EXIT_RUN_NOT_SUCCEEDED;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function printRun(run: Run, ctx: Context): void {
  if (ctx.json) {
    printJson(run);
    return;
  }
  const terminal = isTerminal(run);
  for (const line of runFrame(run, Date.now(), ctx.style, terminal)) print(line);
  if (run.status === 'succeeded' && run.output !== undefined && run.output !== null) {
    print(`output: ${JSON.stringify(run.output)}`);
  }
}

/** Wraps an action: API and usage errors are printed (message, code, details) and exit 1. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const cmd = args[args.length - 1] as Command;
      reportError(err, cmd.optsWithGlobals<GlobalOptions>().json === true);
      process.exitCode = err instanceof CliError ? err.exitCode : 1;
    }
  };
}

function reportError(err: unknown, json: boolean): void {
  if (err instanceof ApiError) {
    if (json) {
      warn(
        JSON.stringify({
          error: {
            code: err.code,
            message: err.message,
            ...(err.details === undefined ? {} : { details: err.details }),
          },
          status: err.status,
        }),
      );
      return;
    }
    warn(`error: ${err.message}`);
    warn(`  ${err.code} (HTTP ${err.status})`);
    for (const line of detailLines(err.details)) warn(`  ${line}`);
    return;
  }
  if (err instanceof CliError) {
    warn(json ? JSON.stringify({ error: { code: CliErrorCode.CLI, message: err.message } }) : `error: ${err.message}`);
    return;
  }
  warn(`error: ${(err as Error)?.stack ?? String(err)}`);
}

/** `[{path, message}]` as `- path: message`; an object as `key: value`; anything else as JSON. */
export function detailLines(details: unknown): string[] {
  if (details === undefined || details === null) return [];
  if (Array.isArray(details)) {
    return details.map((d) => {
      const p = d as { path?: unknown; message?: unknown };
      return typeof p?.message === 'string'
        ? `- ${p.path ? `${String(p.path)}: ` : ''}${p.message}`
        : `- ${JSON.stringify(d)}`;
    });
  }
  if (typeof details === 'object') {
    return Object.entries(details).map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  return [JSON.stringify(details)];
}

function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string })
      .version;
  } catch {
    return '0.0.0';
  }
}

export function buildProgram(): Command {
  const program = new Command('baton')
    .description('Start, watch, retry and cancel Baton runs; apply workflow definitions; emit events.')
    .version(version())
    .option('--url <url>', `gateway URL (env BATON_URL, default ${DEFAULT_URL})`)
    .option('--json', 'print the API answers as JSON')
    .addHelpText(
      'after',
      '\nEnvironment: BATON_URL (gateway), BATON_API_KEY (sent as a bearer token).\n' +
        'Exit codes: 0 ok, 1 error, 2 a watched run did not succeed.',
    )
    .showHelpAfterError();

  const interval = ['--interval <ms>', 'polling interval when watching or following', positiveInt, 500] as const;

  const runs = program.command('runs').description('workflow runs');

  runs
    .command('start <workflow>')
    .description('start a run; prints its id')
    .option('-i, --input <json|@file>', 'the run input: JSON, or @file (JSON or YAML), @- for stdin')
    .option('--idempotency-key <key>', 'a repeated key returns the first run')
    .option('--tag <key=value>', 'a run tag (repeatable)', collectTag)
    .option('-w, --watch', 'then follow it to its end (exit 2 if it does not succeed)')
    .option(...interval)
    .action(
      action(
        async (
          workflow: string,
          opts: { input?: string; idempotencyKey?: string; tag?: string[]; watch?: boolean; interval: number },
          cmd: Command,
        ) => {
          const ctx = contextOf(cmd);
          const body = {
            ...(opts.input === undefined ? {} : { input: parseValue(opts.input, '--input') }),
            ...(opts.idempotencyKey === undefined ? {} : { idempotencyKey: opts.idempotencyKey }),
            ...(opts.tag === undefined ? {} : { tags: tagObject(opts.tag) }),
          };
          const res = await ctx.client.request<RunAccepted>(
            'POST',
            `/v1/workflows/${encodeURIComponent(workflow)}/runs`,
            {
              json: body,
            },
          );
          const note = startNote(res.status, res.body);
          if (note && !ctx.json) warn(note);
          if (ctx.json && !opts.watch) printJson(res.body);
          if (!ctx.json) print(res.body.runId);
          // A debounced trigger's run exists once its window fires: wait for it first.
          if (opts.watch && res.body.debounce) await untilRunExists(ctx, res.body.runId, opts.interval);
          if (opts.watch) await watchAndExit(ctx, res.body.runId, opts.interval);
        },
      ),
    );

  runs
    .command('get <id>')
    .description('show a run and its steps')
    .option('-w, --watch', 'redraw step progress until the run ends (exit 2 if it does not succeed)')
    .option(...interval)
    .action(
      action(async (id: string, opts: { watch?: boolean; interval: number }, cmd: Command) => {
        const ctx = contextOf(cmd);
        if (opts.watch) await watchAndExit(ctx, id, opts.interval);
        else printRun(await getRun(ctx.client, id), ctx);
      }),
    );

  runs
    .command('list')
    .description('runs, newest first')
    .option('--workflow <name>', 'only this workflow')
    .option('--status <status>', 'a status or a comma-separated list')
    .option('--parent <runId>', "only this run's child runs")
    .option('--top-level', 'only runs without a parent')
    .option('--tag <key=value>', 'only runs with this tag (repeatable: all must match)', collectTag)
    .option('--limit <n>', 'how many', positiveInt, 20)
    .action(
      action(
        async (
          opts: {
            workflow?: string;
            status?: string;
            parent?: string;
            topLevel?: boolean;
            tag?: string[];
            limit: number;
          },
          cmd: Command,
        ) => {
          const ctx = contextOf(cmd);
          const { body } = await ctx.client.request<{ runs: Omit<Run, 'steps' | 'compensations'>[] }>(
            'GET',
            '/v1/runs',
            {
              query: {
                workflow: opts.workflow,
                status: opts.status,
                parentRunId: opts.parent,
                topLevel: opts.topLevel ? 'true' : undefined,
                // The API's form is key:value (split at the first colon).
                tag: opts.tag?.map((t) => `${t.slice(0, t.indexOf('='))}:${t.slice(t.indexOf('=') + 1)}`),
                limit: opts.limit,
              },
            },
          );
          if (ctx.json) return printJson(body);
          for (const r of body.runs) {
            const took =
              r.startedAt && r.finishedAt ? formatDuration(Date.parse(r.finishedAt) - Date.parse(r.startedAt)) : '';
            print(
              [r.id, r.status.padEnd(19), `${r.workflow} v${r.workflowVersion}`, r.createdAt, took, tagText(r.tags)]
                .filter((cell, i) => i < 4 || cell)
                .join('  ')
                .trimEnd(),
            );
          }
        },
      ),
    );

  runs
    .command('logs <id>')
    .description("what the run's handlers logged through ctx.log")
    .option('-s, --step <stepId>', 'only this step')
    .option('--level <level>', 'this level and above (trace, debug, info, warn, error, fatal)')
    .option('-f, --follow', 'keep printing new lines until the run ends')
    .option(...interval)
    .action(
      action(
        async (
          id: string,
          opts: { step?: string; level?: string; follow?: boolean; interval: number },
          cmd: Command,
        ) => {
          const ctx = contextOf(cmd);
          await printLogs(
            ctx.client,
            id,
            { write: (t) => process.stdout.write(t) },
            {
              stepId: opts.step,
              level: opts.level,
              follow: opts.follow === true,
              intervalMs: opts.interval,
              json: ctx.json,
              style: ctx.style,
            },
          );
        },
      ),
    );

  runs
    .command('retry <id>')
    .description('resume a failed, compensated or cancelled run at its failed step')
    .option('-i, --input <json|@file>', "replaces the failed step's input")
    .option('-s, --step <stepId>', 'the failed step the input is for (when several failed)')
    .option('-w, --watch', 'then follow the run to its end')
    .option(...interval)
    .action(
      action(
        async (
          id: string,
          opts: { input?: string; step?: string; watch?: boolean; interval: number },
          cmd: Command,
        ) => {
          const ctx = contextOf(cmd);
          const body = {
            ...(opts.input === undefined ? {} : { input: parseValue(opts.input, '--input') }),
            ...(opts.step === undefined ? {} : { stepId: opts.step }),
          };
          // What the run looked like before: until the coordinator takes the retry, it still shows the old end.
          const before = opts.watch ? executionCount(await getRun(ctx.client, id)) : 0;
          const { body: accepted } = await ctx.client.request<RunAccepted>('POST', runPath(id, '/retry'), {
            json: body,
          });
          if (ctx.json && !opts.watch) printJson(accepted);
          if (!ctx.json) print(`retry requested: run ${accepted.runId} (was ${accepted.status})`);
          if (opts.watch) {
            await watchAndExit(ctx, accepted.runId, opts.interval, { isNewEnd: (run) => executionCount(run) > before });
          }
        },
      ),
    );

  runs
    .command('cancel <id>')
    .description('cancel a running run')
    .option('--compensate', 'compensate completed steps first')
    .option('-w, --watch', 'then follow the run to its end')
    .option(...interval)
    .action(
      action(async (id: string, opts: { compensate?: boolean; watch?: boolean; interval: number }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { body: accepted } = await ctx.client.request<RunAccepted>('POST', runPath(id, '/cancel'), {
          json: { compensate: opts.compensate === true },
        });
        if (ctx.json && !opts.watch) printJson(accepted);
        if (!ctx.json) print(`cancellation requested: run ${accepted.runId} (was ${accepted.status})`);
        // Cancelling is what was asked: here a run that ends `cancelled` is the success.
        if (opts.watch) await watchAndExit(ctx, accepted.runId, opts.interval, { expected: 'cancelled' });
      }),
    );

  /** The filter options of the bulk commands, as the API's body. */
  const bulkCommand = (name: 'bulk-retry' | 'bulk-cancel') =>
    runs
      .command(name)
      .option('--workflow <name>', 'only runs of this workflow')
      .option('--status <status>', 'a status or a comma-separated list')
      .option('--tag <key=value>', 'only runs with this tag (repeatable: all must match)', collectTag)
      .option('--created-after <time>', 'only runs created after this ISO time')
      .option('--created-before <time>', 'only runs created before this ISO time')
      .option('--rate <perSec>', 'at most this many runs a second (default 10)', positiveInt)
      .option('--dry-run', 'only count the matching runs')
      .option('-w, --watch', 'then follow the operation to its end')
      .option(...interval);

  const bulkBody = (opts: BulkOptions): Record<string, unknown> => ({
    filter: {
      ...(opts.workflow === undefined ? {} : { workflow: opts.workflow }),
      ...(opts.status === undefined ? {} : { status: opts.status.split(',').map((st) => st.trim()) }),
      ...(opts.tag === undefined ? {} : { tags: tagObject(opts.tag) }),
      ...(opts.createdAfter === undefined ? {} : { createdAfter: opts.createdAfter }),
      ...(opts.createdBefore === undefined ? {} : { createdBefore: opts.createdBefore }),
    },
    ...(opts.rate === undefined ? {} : { ratePerSec: opts.rate }),
    ...(opts.dryRun ? { dryRun: true } : {}),
  });

  const runBulk = async (ctx: Context, kind: 'retry' | 'cancel', body: Record<string, unknown>, opts: BulkOptions) => {
    const res = await ctx.client.request<{ operationId?: string; matched: number }>('POST', `/v1/runs/bulk/${kind}`, {
      json: body,
    });
    if (ctx.json && !opts.watch) return printJson(res.body);
    if (!res.body.operationId) {
      if (!ctx.json) print(`dry run: ${res.body.matched} run${res.body.matched === 1 ? '' : 's'} match`);
      return;
    }
    if (!ctx.json) print(`bulk ${kind} ${res.body.operationId}: ${res.body.matched} runs matched`);
    if (opts.watch) await watchOperation(ctx, res.body.operationId, opts.interval);
  };

  bulkCommand('bulk-retry')
    .description('retry every run a filter matches, paced (--workflow or --status required)')
    .option('-i, --input <json|@file>', "replaces each run's failed step input")
    .action(
      action(async (opts: BulkOptions & { input?: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const body = bulkBody(opts);
        if (opts.input !== undefined) body.input = parseValue(opts.input, '--input');
        await runBulk(ctx, 'retry', body, opts);
      }),
    );

  bulkCommand('bulk-cancel')
    .description('cancel every unfinished run a filter matches, paced (--workflow or --status required)')
    .option('--compensate', 'compensate completed steps first')
    .action(
      action(async (opts: BulkOptions & { compensate?: boolean }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const body = bulkBody(opts);
        if (opts.compensate) body.compensate = true;
        await runBulk(ctx, 'cancel', body, opts);
      }),
    );

  runs
    .command('fork <id>')
    .description('a new run of a finished one that keeps the steps before --from and runs from there')
    .requiredOption('--from <stepId>', 'the step to run again from (it and every step that needs it)')
    .option('-i, --input <json|@file>', 'a new run input (default: the source run input)')
    .option('-w, --watch', 'then follow the fork to its end (exit 2 if it does not succeed)')
    .option(...interval)
    .action(
      action(
        async (id: string, opts: { from: string; input?: string; watch?: boolean; interval: number }, cmd: Command) => {
          const ctx = contextOf(cmd);
          const { body } = await ctx.client.request<RunAccepted & { kept: string[]; rerun: string[] }>(
            'POST',
            runPath(id, '/fork'),
            {
              json: {
                fromStep: opts.from,
                ...(opts.input === undefined ? {} : { input: parseValue(opts.input, '--input') }),
              },
            },
          );
          if (ctx.json && !opts.watch) printJson(body);
          if (!ctx.json) {
            print(body.runId);
            warn(`kept: ${body.kept.join(', ') || '(none)'}; runs again: ${body.rerun.join(', ')}`);
          }
          if (opts.watch) await watchAndExit(ctx, body.runId, opts.interval);
        },
      ),
    );

  const operations = program.command('operations').description('bulk operations (runs bulk-retry, bulk-cancel)');

  operations
    .command('get <id>')
    .description("an operation's progress, and the runs it skipped or failed with why")
    .option('-w, --watch', 'redraw until it ends')
    .option(...interval)
    .action(
      action(async (id: string, opts: { watch?: boolean; interval: number }, cmd: Command) => {
        const ctx = contextOf(cmd);
        if (opts.watch) return watchOperation(ctx, id, opts.interval);
        const { body } = await ctx.client.request<Operation>('GET', operationPath(id));
        if (ctx.json) return printJson(body);
        for (const line of operationLines(body)) print(line);
      }),
    );

  operations
    .command('list')
    .description('bulk operations, newest first')
    .option('--status <status>', 'running, succeeded, cancelled or failed')
    .option('--limit <n>', 'how many', positiveInt, 20)
    .action(
      action(async (opts: { status?: string; limit: number }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { body } = await ctx.client.request<{ operations: Operation[] }>('GET', '/v1/operations', {
          query: { status: opts.status, limit: opts.limit },
        });
        if (ctx.json) return printJson(body);
        for (const op of body.operations) print(operationLines(op)[0]);
      }),
    );

  operations
    .command('cancel <id>')
    .description('stop a running operation; the runs it has not reached are left as they are')
    .action(
      action(async (id: string, _opts: object, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { body } = await ctx.client.request<Operation>('POST', operationPath(id, '/cancel'));
        if (ctx.json) return printJson(body);
        for (const line of operationLines(body)) print(line);
      }),
    );

  const workflows = program.command('workflows').description('workflow definitions');

  workflows
    .command('apply <file>')
    .description('store a definition (YAML or JSON); prints its version and warnings')
    .option('--name <name>', "the workflow name (default: the file's `name`, else the file name)")
    .action(
      action(async (file: string, opts: { name?: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const def = readDefinitionFile(file, opts.name);
        const res = await ctx.client.request<WorkflowSaved>('PUT', `/v1/workflows/${encodeURIComponent(def.name)}`, {
          body: def.body,
          contentType: def.contentType,
        });
        if (ctx.json) return printJson(res.body);
        print(`${res.body.name}: version ${res.body.version} (${res.status === 201 ? 'stored' : 'unchanged'})`);
        for (const w of res.body.warnings) warn(`warning: ${w.path}: ${w.message}`);
      }),
    );

  workflows
    .command('list')
    .description('the latest version of every workflow')
    .action(
      action(async (_opts: object, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { body } = await ctx.client.request<{
          workflows: { name: string; version: number; description: string | null; paused?: boolean }[];
        }>('GET', '/v1/workflows');
        if (ctx.json) return printJson(body);
        for (const w of body.workflows) {
          print(`${w.name}  v${w.version}${w.paused ? '  (paused)' : ''}${w.description ? `  ${w.description}` : ''}`);
        }
      }),
    );

  for (const [verb, what] of [
    ['pause', 'new runs are accepted and stay pending until resumed; running runs go on'],
    ['resume', 'admit its pending runs, in order (priority, then arrival)'],
  ] as const) {
    workflows
      .command(`${verb} <name>`)
      .description(`${verb} a workflow: ${what}`)
      .action(
        action(async (name: string, _opts: object, cmd: Command) => {
          const ctx = contextOf(cmd);
          const { body } = await ctx.client.request<{ name: string; paused: boolean; pausedAt: string | null }>(
            'POST',
            `/v1/workflows/${encodeURIComponent(name)}/${verb}`,
          );
          if (ctx.json) return printJson(body);
          print(`${body.name}: ${body.paused ? `paused (since ${body.pausedAt})` : 'running (not paused)'}`);
        }),
      );
  }

  const functions = program.command('functions').description('step functions and their queues');
  const functionPath = (name: string, suffix = ''): string => `/v1/functions/${encodeURIComponent(name)}${suffix}`;
  const pauseText = (f: FunctionControl): string =>
    f.paused ? `paused since ${f.pausedAt ?? '?'}${f.pauseReason ? ` (${f.pauseReason})` : ''}` : 'running';

  functions
    .command('list')
    .description('every known function: paused or not, jobs waiting and active, workers')
    .action(
      action(async (_opts: object, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { body } = await ctx.client.request<{ functions: FunctionSummary[] }>('GET', '/v1/functions');
        if (ctx.json) return printJson(body);
        for (const f of body.functions) {
          // Waiting to be handed out: step jobs carry their run's priority (BullMQ's prioritized set).
          const waiting = (f.jobs.waiting ?? 0) + (f.jobs.prioritized ?? 0);
          const jobs = `waiting ${waiting}, active ${f.jobs.active ?? 0}, workers ${f.workers}`;
          print(`${f.name}  ${f.paused ? 'PAUSED' : 'running'}  ${jobs}${f.pauseReason ? `  (${f.pauseReason})` : ''}`);
        }
      }),
    );

  functions
    .command('pause <name>')
    .description("stop handing out the function's jobs (running ones finish, new ones wait) until resumed")
    .option('-r, --reason <text>', 'why: shown with the function')
    .action(
      action(async (name: string, opts: { reason?: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { body } = await ctx.client.request<FunctionControl>('POST', functionPath(name, '/pause'), {
          json: opts.reason === undefined ? {} : { reason: opts.reason },
        });
        if (ctx.json) return printJson(body);
        print(`${body.name}: ${pauseText(body)}`);
      }),
    );

  functions
    .command('resume <name>')
    .description("hand out the function's jobs again")
    .action(
      action(async (name: string, _opts: object, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { body } = await ctx.client.request<FunctionControl>('POST', functionPath(name, '/resume'));
        if (ctx.json) return printJson(body);
        print(`${body.name}: ${pauseText(body)}`);
      }),
    );

  const events = program.command('events').description('events');

  events
    .command('emit <name>')
    .description('publish an event: starts subscribed workflows, wakes waiting steps')
    .requiredOption('-p, --payload <json|@file>', 'the payload: JSON, or @file (JSON or YAML), @- for stdin')
    .option('--idempotency-key <key>', 'a repeated key returns the first answer and starts nothing')
    .action(
      action(async (name: string, opts: { payload: string; idempotencyKey?: string }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const res = await ctx.client.request<EventPublished>('POST', `/v1/events/${encodeURIComponent(name)}`, {
          json: {
            payload: parseValue(opts.payload, '--payload'),
            ...(opts.idempotencyKey === undefined ? {} : { idempotencyKey: opts.idempotencyKey }),
          },
        });
        if (ctx.json) return printJson(res.body);
        const runs = res.body.runIds.length;
        print(
          `event ${res.body.eventId}: ${runs} run${runs === 1 ? '' : 's'} started${res.status === 200 ? ' (earlier delivery: same idempotency key)' : ''}`,
        );
        for (const runId of res.body.runIds) print(runId);
        for (const r of res.body.rejected ?? []) warn(`warning: ${r.workflow} refused the payload: ${r.message}`);
      }),
    );

  program
    .command('new')
    .description('create a project from a template')
    .command('function <name>')
    .description('a function project of your own (templates/function), ready to build, test and deploy')
    .option('--dir <path>', 'where to create it (default: ./<name>)')
    .action(
      action(async (name: string, opts: { dir?: string }) => {
        const created = newFunctionProject(name, path.resolve(opts.dir ?? name));
        print(`created ${created.dir} (${created.files.length} files)`);
        print('next: read its README.md — pack the SDK into vendor/, npm install, npm test, docker build');
      }),
    );

  return program;
}

export function main(argv: string[] = process.argv): void {
  buildProgram()
    .parseAsync(argv)
    .catch((err: unknown) => {
      warn(`error: ${errorText(err) ?? String(err)}`);
      process.exitCode = 1;
    });
}

// `node cli/dist/main.js …` runs it directly; bin/baton.js (the `baton` command) calls main().
if (require.main === module) main();
