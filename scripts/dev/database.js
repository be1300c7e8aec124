'use strict';
/** Step "database" of `npm run dev`, and all of `npm run setup`: create, migrate, seed, load workflows. */
const fs = require('node:fs');
const path = require('node:path');
const { maskUrl } = require('./output');
const { DevError, describeError, errorCode } = require('./procs');
const { loadEngine, loadWorkflow } = require('./settings');

/** Connection failures worth a hint rather than a stack trace. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', '28P01', '28000']);

function databaseName(databaseUrl) {
  return decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, ''));
}

/**
 * Creates the database when missing, applies pending migrations, loads the demo data and saves
 * every definition in `workflowsDir`, printing what each step did.
 */
async function prepareDatabase(databaseUrl, { workflowsDir, log }) {
  const engine = loadEngine();
  const name = databaseName(databaseUrl);
  try {
    const created = await engine.ensureDatabase(databaseUrl);
    log.ok(`database ${name}: ${created ? 'created' : 'exists'}`);
  } catch (err) {
    if (!UNREACHABLE.has(errorCode(err))) throw err;
    throw new DevError(
      `PostgreSQL at ${maskUrl(databaseUrl)} is not usable: ${describeError(err)} — start it ` +
        '(docker compose up -d postgres) or point DATABASE_URL at a running server',
    );
  }

  const applied = await engine.migrate(databaseUrl);
  log.ok(applied.length ? `migrations applied: ${applied.join(', ')}` : 'migrations: up to date');

  await engine.seedDemoData(databaseUrl);
  log.ok('demo data: customers cust-01…cust-05 and their orders');

  await loadWorkflows(engine, databaseUrl, workflowsDir, log);
}

async function loadWorkflows(engine, databaseUrl, workflowsDir, log) {
  const shown = path.relative(process.cwd(), workflowsDir) || workflowsDir;
  if (!fs.existsSync(workflowsDir)) {
    log.warn(`${shown}/ does not exist: no workflow definitions loaded`);
    return;
  }
  const pool = engine.createPool(databaseUrl, { max: 2, applicationName: 'baton-dev-setup' });
  try {
    const saved = await engine.loadDefinitionsFromDir(pool, workflowsDir);
    if (!saved.length) log.warn(`${shown}/ holds no *.yaml, *.yml or *.json definition`);
    for (const d of saved) {
      log.ok(`workflow ${d.name} v${d.version} from ${d.file}${d.created ? ' (new version)' : ' (unchanged)'}`);
    }
  } catch (err) {
    // A bad definition is the developer's to fix: name it instead of dumping a stack.
    if (err instanceof loadWorkflow().ValidationError) throw new DevError(err.message);
    throw err;
  } finally {
    await pool.end();
  }
}

module.exports = { prepareDatabase };
