// The bench's own CommonJS module (bench/ is plain JavaScript, outside the TypeScript build).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { issue16Targets } = require('../../bench/lib/targets') as {
  issue16Targets(report: unknown): { target: string; value: unknown; met: boolean }[];
};

/** A system of a bench report with what issue16Targets reads. */
function system(name: string, stepsPerSec: number, extra: Record<string, unknown> = {}) {
  return { name, stepsPerSec, durable: name !== 'bullmq-chain', valid: true, ...extra };
}

const latency = (p50: number, p99: number) => ({ stepLatencyMs: { p50, p99 } });

describe("the bench's issue-16 targets", () => {
  const report = (baton: Record<string, unknown>) => ({
    systems: [
      system('baton', 1000, baton),
      system('bullmq-chain', 2000),
      system('restate', 600, { commonRate: { rate: 150, ...latency(5, 20) } }),
      system('dbos', 400),
    ],
  });

  it('marks each target met or not from the figures at its bound', () => {
    const targets = issue16Targets(
      report({
        rssMb: 300,
        latencyByLoad: { '10%': latency(2, 8), '50%': latency(8, 30.5) },
        commonRate: { rate: 150, ...latency(4, 19) },
      }),
    );
    const met = Object.fromEntries(targets.map((t) => [t.target, t.met]));
    expect(met).toEqual({
      'steps/s >= 1.5x restate': true,
      'steps/s >= 2x dbos': true,
      'steps/s >= 0.45x bullmq-chain (stretch 0.55x)': true,
      'step p50 <= 2 ms and p99 <= 8 ms at 10% load': true,
      'step p50 <= 8 ms and p99 <= 30 ms at 50% load': false,
      'gateway + coordinator + function RSS under burst <= 300 MB': true,
      'lowest step p99 of the durable systems at 150 runs/s': true,
    });
  });

  it('fails the RSS target above 300 MB and leaves out what the run did not measure', () => {
    const targets = issue16Targets(report({ rssMb: 300.1 }));
    expect(targets.map((t) => [t.target, t.met])).toEqual([
      ['steps/s >= 1.5x restate', true],
      ['steps/s >= 2x dbos', true],
      ['steps/s >= 0.45x bullmq-chain (stretch 0.55x)', true],
      ['gateway + coordinator + function RSS under burst <= 300 MB', false],
    ]);
  });
});
