'use strict';
/** The stdout table and the SVG plot (hand-drawn bars: throughput, then step latency p50/p99). */
const fs = require('node:fs');
const { HOPS, PATH } = require('./hops');

const fmt = (v, digits = 1) => (v === null || v === undefined ? '-' : Number(v).toFixed(digits));

function printTable(report) {
  const common = report.options.commonRate;
  const header = [
    'system',
    'runs',
    'steps/s',
    'wf/s',
    'x chain',
    'x baton',
    'step p50',
    'step p99',
    ...(common ? [`@${common}/s p50`, `@${common}/s p99`] : []),
    'trig p50',
    'trig p99',
    'RSS MB',
    'redis/step',
    'pg commits/step',
    'in order',
  ];
  const rows = report.systems.map((s) => [
    s.name,
    String(s.runs),
    fmt(s.stepsPerSec, 0),
    fmt(s.workflowsPerSec, 1),
    fmt(s.vsBullmqChain?.stepsPerSec, 2),
    fmt(s.vsBaton?.stepsPerSec, 2),
    fmt(s.stepLatencyMs.p50, 2),
    fmt(s.stepLatencyMs.p99, 2),
    ...(common
      ? [
          `${fmt(s.commonRate?.stepLatencyMs.p50, 2)}${s.commonRate?.aboveCapacity ? '*' : ''}`,
          `${fmt(s.commonRate?.stepLatencyMs.p99, 2)}${s.commonRate?.aboveCapacity ? '*' : ''}`,
        ]
      : []),
    fmt(s.triggerLatencyMs.p50, 2),
    fmt(s.triggerLatencyMs.p99, 2),
    fmt(s.rssMb, 0),
    fmt(s.redisCallsPerStep, 2),
    fmt(s.pgCommitsPerStep, 2),
    s.valid
      ? `${s.runsInOrder}/${s.runsTriggered}`
      : `NO ${s.runsInOrder}/${s.runsTriggered} ${JSON.stringify(s.problems)}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [
    `${report.machine.cpus} x ${report.machine.cpuModel}, node ${report.machine.node}, ${report.date}`,
    'latencies in ms (open loop at 50% of each system’s own capacity, or --rate), handler start to handler start',
    ...(common
      ? [`@${common}/s: step latency at the rate common to every system (* above that system's own capacity)`]
      : []),
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    'step -> next step latency p50/p99 ms (trigger -> step 1 p50/p99) at each load point:',
    ...report.systems.map(
      (s) =>
        `  ${s.name.padEnd(18)}${Object.entries(s.latencyByLoad ?? {})
          .map(
            ([load, l]) =>
              `${load} (${l.rate}/s): ${fmt(l.stepLatencyMs.p50, 2)}/${fmt(l.stepLatencyMs.p99, 2)} (${fmt(l.triggerLatencyMs.p50, 2)}/${fmt(l.triggerLatencyMs.p99, 2)})`,
          )
          .join('   ')}`,
    ),
    ...hopLines(report),
    '',
    ...report.systems.map(
      (s) =>
        `${s.name}: ${s.tuning}; durability: ${s.durability}; headline latency at ${s.latencyRate} runs/s; CPU % during burst ${JSON.stringify(s.cpuPctDuringBurst)}${s.meanBatchMessages ? `; coordinator batches: ${fmt(s.meanBatchMessages, 1)} messages, ${fmt(s.meanBatchMs, 1)} ms on average` : ''}`,
    ),
    ...(report.skipped ?? []).map((s) => {
      // The first line, and the first line naming an error in the output quoted after it.
      const lines = s.reason.split('\n');
      const cause = lines.slice(1).find((l) => /error|cannot|failed/i.test(l));
      return `SKIPPED ${s.name}: ${lines[0]}${cause ? ` ${cause.trim()}` : ''}`;
    }),
    ...(report.targets?.length ? ['', 'issue 16 targets for baton:'] : []),
    ...(report.targets ?? []).map(
      (t) =>
        `  ${t.met ? 'met    ' : 'NOT met'}  ${t.target}: ${typeof t.value === 'object' && t.value !== null ? `${fmt(t.value.p50, 2)} / ${fmt(t.value.p99, 2)}` : fmt(t.value, 2)}${t.lowest ? ` (lowest: ${t.lowest.system} ${fmt(t.lowest.p99, 2)})` : ''}`,
    ),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

/**
 * Baton's step → step latency by hop at each load point: mean / p50 / p99 ms of each hop and its
 * share of the path (the sum of the path's means), against the measured step → step mean.
 */
function hopLines(report) {
  const lines = [];
  for (const s of report.systems) {
    for (const [load, l] of Object.entries(s.latencyByLoad ?? {})) {
      if (!l.hopsMs) continue;
      if (!lines.length) {
        lines.push(
          '',
          'per-hop breakdown of step -> next step (mean / p50 / p99 ms, share of the path by mean; enqueue overlaps queue_wait):',
        );
      }
      const path = PATH.reduce((sum, hop) => sum + (l.hopsMs[hop]?.mean ?? 0), 0);
      const cells = HOPS.filter((hop) => l.hopsMs[hop]).map((hop) => {
        const h = l.hopsMs[hop];
        const share =
          PATH.includes(hop) && path > 0 ? ` ${Math.round((100 * h.mean) / path)}%` : ' (overlaps queue_wait)';
        return `${hop} ${fmt(h.mean, 2)}/${fmt(h.p50, 2)}/${fmt(h.p99, 2)}${share}`;
      });
      lines.push(
        `  ${s.name} ${load} (${l.rate}/s): ${cells.join('  ')}; path ${fmt(path, 2)} vs step->step mean ${fmt(l.stepLatencyMs.mean, 2)}`,
      );
    }
  }
  return lines;
}

const COLORS = {
  baton: '#d9480f',
  'bullmq-chain': '#1c7ed6',
  'bullmq-flow': '#74c0fc',
  'pg-boss': '#2b8a3e',
  'graphile-worker': '#8ce99a',
  'bullmq-chain-aof': '#4263eb',
  dbos: '#7048e8',
  'dbos-queue': '#b197fc',
  restate: '#e64980',
};
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');

function bars(title, unit, items, x0, y0, width) {
  const rowH = 26;
  const labelW = 140;
  const max = Math.max(1e-9, ...items.flatMap((i) => i.values.map((v) => v ?? 0)));
  const scale = (width - labelW - 110) / max;
  const parts = [`<text x="${x0}" y="${y0}" font-weight="bold">${esc(title)}</text>`];
  items.forEach((item, i) => {
    const y = y0 + 14 + i * rowH;
    parts.push(`<text x="${x0}" y="${y + 15}">${esc(item.name)}</text>`);
    item.values.forEach((v, j) => {
      const h = item.values.length > 1 ? 10 : 18;
      const yy = y + j * 10;
      const w = Math.max(1, (v ?? 0) * scale);
      const color = COLORS[item.color ?? item.name] ?? '#868e96';
      parts.push(
        `<rect x="${x0 + labelW}" y="${yy}" width="${w.toFixed(1)}" height="${h - 1}" fill="${color}" opacity="${j ? 0.55 : 1}"/>`,
        `<text x="${(x0 + labelW + w + 4).toFixed(1)}" y="${yy + h - 2}" font-size="11">${v === null ? 'n/a' : fmt(v, v < 10 ? 2 : 0)}${j ? ' p99' : item.values.length > 1 ? ' p50' : ''} ${unit}</text>`,
      );
    });
  });
  return { svg: parts.join('\n'), height: 20 + items.length * rowH };
}

function writeSvg(report, file) {
  const width = 720;
  const systems = report.systems;
  const a = bars(
    'Throughput, burst (steps/s, higher is better)',
    'steps/s',
    systems.map((s) => ({ name: s.name, values: [s.stepsPerSec] })),
    10,
    66,
    width,
  );
  const b = bars(
    'Step → next step latency, open loop at 50% load (ms, lower is better)',
    'ms',
    systems.map((s) => ({ name: s.name, values: [s.stepLatencyMs.p50, s.stepLatencyMs.p99] })),
    10,
    66 + a.height + 30,
    width,
  );
  const common = report.options.commonRate;
  const c = common
    ? bars(
        `Step → next step latency at ${common} runs/s for every system (ms; * above its own capacity)`,
        'ms',
        systems.map((s) => ({
          name: `${s.name}${s.commonRate?.aboveCapacity ? ' *' : ''}`,
          color: s.name,
          values: [s.commonRate?.stepLatencyMs.p50 ?? null, s.commonRate?.stepLatencyMs.p99 ?? null],
        })),
        10,
        66 + a.height + 30 + b.height + 30,
        width,
      )
    : { svg: '', height: -30 };
  const height = 66 + a.height + 30 + b.height + 30 + c.height + 20;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">Baton benchmark: 4-step no-op workflow</text>
<text x="10" y="38" font-size="11" fill="#555">${esc(`${report.date} · ${report.machine.cpus} CPUs (${report.machine.cpuModel}) · ${report.systems[0]?.runs ?? 0} runs × ${report.options.reps} reps · provisional (shared machine)`)}</text>
${a.svg}
${b.svg}
${c.svg}
</svg>
`;
  fs.writeFileSync(file, svg);
}

module.exports = { printTable, writeSvg };
