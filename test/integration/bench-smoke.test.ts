import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The benchmark harness (bench/run.js, `npm run bench`) on a tiny run of two systems: it must
 * finish, every run must have completed its 4 steps in order, and the JSON must have the shape
 * docs/PERFORMANCE.md documents. No timing is asserted. Baton's processes run from the build
 * (`npx tsc -b`, which `npm test` runs first).
 */
const ROOT = path.resolve(__dirname, '..', '..');

interface SystemResult {
  name: string;
  runs: number;
  stepsPerSec: number | null;
  workflowsPerSec: number | null;
  stepLatencyMs: { p50: number | null; p99: number | null };
  triggerLatencyMs: { p50: number | null; p99: number | null };
  rssMb: number;
  redisCallsPerStep: number | null;
  pgCommitsPerStep: number | null;
  valid: boolean;
  runsTriggered: number;
  runsInOrder: number;
  problems: Record<string, number>;
  latencyByLoad: Record<
    string,
    {
      rate: number;
      stepLatencyMs: { p50: number | null; p99: number | null; mean: number | null };
      hopsMs?: Record<string, { mean: number; p50: number; p99: number }>;
    }
  >;
  coordinatorBatches: number;
  meanBatchMessages: number;
}

interface Report {
  machine: { cpus: number };
  date: string;
  systems: SystemResult[];
}

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bench/run.js', ...args],
      { cwd: ROOT, env, timeout: 90_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('npm run bench: harness smoke run', () => {
  const out = path.join(os.tmpdir(), `baton-bench-smoke-${crypto.randomBytes(4).toString('hex')}.json`);
  const svg = out.replace(/\.json$/, '.svg');
  afterAll(() => {
    for (const file of [out, svg]) fs.rmSync(file, { force: true });
  });

  it('measures baton and bullmq-chain and reports every run complete and in order', async () => {
    const res = await run([
      '--runs',
      '8',
      '--reps',
      '1',
      '--rate',
      '20',
      '--latency-runs',
      '8',
      '--systems',
      'bullmq-chain,baton',
      '--out',
      out,
    ]);
    if (res.code !== 0)
      throw new Error(`bench exited ${res.code}\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`);
    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as Report;
    expect(report.machine.cpus).toBeGreaterThan(0);
    expect(Number.isNaN(Date.parse(report.date))).toBe(false);
    expect(report.systems.map((s) => s.name)).toEqual(['bullmq-chain', 'baton']);
    for (const s of report.systems) {
      expect(s).toMatchObject({ runs: 8, valid: true, problems: { lost: 0, duplicated: 0, reordered: 0 } });
      expect(s.runsInOrder).toBe(s.runsTriggered);
      for (const value of [
        s.stepsPerSec,
        s.workflowsPerSec,
        s.stepLatencyMs.p50,
        s.stepLatencyMs.p99,
        s.triggerLatencyMs.p50,
        s.triggerLatencyMs.p99,
        s.rssMb,
        s.redisCallsPerStep,
        s.pgCommitsPerStep,
      ]) {
        expect(typeof value).toBe('number');
        expect(value).toBeGreaterThanOrEqual(0);
      }
    }
    // One --rate given: one latency point, which is also the headline figure.
    for (const s of report.systems) {
      expect(Object.keys(s.latencyByLoad)).toEqual(['given']);
      expect(s.latencyByLoad.given.stepLatencyMs).toEqual(s.stepLatencyMs);
    }
    // Group commit at work: every run's four step outcomes went through the coordinator's inbox
    // batches (messages = batches x mean size; slow steps add a started report, so at least). Its start
    // did not: the gateway starts a bench-noop run with its first step (engine/src/direct-start.ts).
    const baton = report.systems[1];
    expect(baton.coordinatorBatches).toBeGreaterThan(0);
    expect(Math.round(baton.coordinatorBatches * baton.meanBatchMessages)).toBeGreaterThanOrEqual(
      4 * baton.runsTriggered,
    );
    // Baton's step -> step latency by hop, read off its processes' baton_step_hop_seconds.
    const hops = baton.latencyByLoad.given.hopsMs ?? {};
    expect(Object.keys(hops).sort()).toEqual(['enqueue', 'handler_start', 'inbox_wait', 'queue_wait', 'transaction']);
    for (const h of Object.values(hops)) {
      for (const value of [h.mean, h.p50, h.p99]) {
        expect(typeof value).toBe('number');
        expect(value).toBeGreaterThanOrEqual(0);
      }
    }
    expect(report.systems[0].latencyByLoad.given.hopsMs).toBeUndefined();
    expect(res.stdout).toContain('per-hop breakdown');
    // Baton records every step in PostgreSQL; raw BullMQ never touches it.
    expect(report.systems[1].pgCommitsPerStep).toBeGreaterThan(0);
    expect(report.systems[0].pgCommitsPerStep).toBe(0);
    expect(fs.readFileSync(svg, 'utf8')).toContain('<svg');
    expect(res.stdout).toContain('bullmq-chain');
  }, 90_000);

  it('runs the fan-out scenario alone and writes its section into the file, keeping the rest', async () => {
    // What the systems scenario wrote before: the fan-out run must replace only its own section.
    fs.writeFileSync(out, JSON.stringify({ systems: [{ name: 'kept' }], fanout: { stale: true } }));
    const res = await run(['--scenario', 'fanout', '--fanout-items', '20', '--reps', '1', '--out', out]);
    if (res.code !== 0)
      throw new Error(`bench exited ${res.code}\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`);
    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as { systems: unknown; fanout: FanoutSection };
    expect(report.systems).toEqual([{ name: 'kept' }]);
    const { fanout } = report;
    expect(fanout).not.toHaveProperty('stale');
    expect(fanout.complete).toBe(true);
    // One round of each shape at the one size (the warm-up phases are not reported).
    expect(fanout.phases.map((p) => `${p.shape}:${p.items}`).sort()).toEqual(['forEach:20', 'separate:20']);
    for (const p of fanout.phases) expect(p).toMatchObject({ complete: true, retried: 0, problems: [] });
    const size = fanout.bySize['20'];
    for (const shape of [size.forEach, size.separate]) {
      for (const value of [
        shape.itemsPerSec,
        shape.coordinatorCpuMsPerItem,
        shape.coordinatorRssMb.before,
        shape.coordinatorRssMb.peak,
        shape.coordinatorRssMb.after,
      ]) {
        expect(typeof value).toBe('number');
        expect(value).toBeGreaterThan(0);
      }
      expect(shape.coordinatorRssMb.peak).toBeGreaterThanOrEqual(shape.coordinatorRssMb.before);
    }
    // One forEach run of 20 items: its start, and one report per item, went through the inbox.
    expect(size.forEach.inboxMessagesPerItem).toBeGreaterThanOrEqual(1);
    expect(typeof size.forEachVsSeparate.itemsPerSec).toBe('number');
    expect(fanout.target).toMatchObject({ value: size.forEachVsSeparate.itemsPerSec });
    expect(res.stdout).toContain('forEach/separate');
  }, 90_000);
});

interface FanoutShape {
  itemsPerSec: number;
  coordinatorCpuMsPerItem: number;
  coordinatorRssMb: { before: number; peak: number; after: number };
  inboxMessagesPerItem: number;
}

interface FanoutSection {
  complete: boolean;
  phases: { shape: string; items: number; complete: boolean; retried: number; problems: string[] }[];
  bySize: Record<string, { forEach: FanoutShape; separate: FanoutShape; forEachVsSeparate: { itemsPerSec: number } }>;
  target: { value: number; met: boolean };
}
