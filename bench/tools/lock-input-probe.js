'use strict';
/**
 * What the statement that starts every coordinator inbox batch (lockAndRecord, with the executions'
 * load after it) costs by the size of the run's input, e.g. a forEach list (docs/PERFORMANCE.md,
 * *Fan-out*). A scratch database on the bench's PostgreSQL server, dropped at the end; needs the build.
 *   node bench/tools/lock-input-probe.js
 */
const path = require('node:path');
const ROOT = path.resolve(__dirname, '..', '..');
const engine = require('@baton/engine');
const { lockAndRecord, loadExecutionsOf } = require(path.join(ROOT, 'services/coordinator/dist/run-store.js'));
const { Pool, Client } = require('pg');
const crypto = require('node:crypto');
const { performance } = require('node:perf_hooks');
const { withDatabase } = require('../lib/infra');

const SERVER =
  process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
(async () => {
  const db = `fanout_probe_${crypto.randomBytes(3).toString('hex')}`;
  const admin = new Client({ connectionString: withDatabase(SERVER, 'postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${db}`);
  const url = withDatabase(SERVER, db);
  try {
    await engine.migrate(url);
    const pool = new Pool({ connectionString: url, max: 1 });
    await pool.query(`INSERT INTO workflow_definitions (name, version, spec, spec_hash) VALUES ('w', 1, '{}', 'x')`);
    const pad = 'x'.repeat(280);
    const inputs = {
      'empty {}': {},
      '1 000 numbers': { items: Array.from({ length: 1000 }, (_, i) => i) },
      '10 000 numbers': { items: Array.from({ length: 10000 }, (_, i) => i) },
      '1 000 x 300 B': { items: Array.from({ length: 1000 }, (_, i) => ({ i, pad })) },
      '10 000 x 300 B': { items: Array.from({ length: 10000 }, (_, i) => ({ i, pad })) },
    };
    for (const [label, input] of Object.entries(inputs)) {
      const id = crypto.randomUUID();
      await pool.query(
        `INSERT INTO runs (id, workflow_name, workflow_version, status, input, trigger) VALUES ($1, 'w', 1, 'running', $2, '{}')`,
        [id, JSON.stringify(input)],
      );
      const client = await pool.connect();
      const times = [];
      for (let i = 0; i < 25; i += 1) {
        await client.query('BEGIN');
        const t = performance.now();
        await lockAndRecord(client, [id], []);
        await loadExecutionsOf(client, [id]);
        times.push(performance.now() - t);
        await client.query('ROLLBACK');
      }
      const cpu0 = process.cpuUsage();
      for (let i = 0; i < 10; i += 1) {
        await client.query('BEGIN');
        await lockAndRecord(client, [id], []);
        await client.query('ROLLBACK');
      }
      const cpu = process.cpuUsage(cpu0);
      const { rows } = await client.query(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT to_jsonb(l) FROM (SELECT id, input FROM runs WHERE id = $1 FOR UPDATE) l`,
        [id],
      );
      const size = (
        await client.query('SELECT pg_column_size(input) AS s, length(input::text) AS t FROM runs WHERE id = $1', [id])
      ).rows[0];
      client.release();
      times.sort((a, b) => a - b);
      const plan = rows[0]['QUERY PLAN'][0];
      process.stdout.write(
        `${label.padEnd(16)} input ${(size.t / 1024).toFixed(0).padStart(5)} KB text (${(size.s / 1024).toFixed(0)} KB stored): ` +
          `lockAndRecord+loadExecutions median ${times[12].toFixed(2)} ms, coordinator CPU ${((cpu.user + cpu.system) / 1000 / 10).toFixed(2)} ms per lockAndRecord; ` +
          `server: to_jsonb(run row) execution ${plan['Execution Time'].toFixed(2)} ms\n`,
      );
    }
    await pool.end();
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
  }
})().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exit(1);
});
