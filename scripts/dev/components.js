'use strict';
/** The deployables `npm run dev` runs: the same dist/main.js entry points their containers run. */
const fs = require('node:fs');
const path = require('node:path');
const { DevError } = require('./procs');
const { ROOT } = require('./settings');

/**
 * gateway, coordinator, and every folder of functions/ with a package.json — discovered, so that a
 * new function runs without touching the runner.
 */
function discoverComponents() {
  const functionsDir = path.join(ROOT, 'functions');
  const functions = fs
    .readdirSync(functionsDir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && fs.existsSync(path.join(functionsDir, d.name, 'package.json')))
    .map((d) => d.name)
    .sort();
  const components = [
    { name: 'gateway', dir: 'services/gateway', kind: 'gateway' },
    { name: 'coordinator', dir: 'services/coordinator', kind: 'coordinator' },
    ...functions.map((name) => ({ name, dir: `functions/${name}`, kind: 'function' })),
  ];
  return components.map((c) => ({ ...c, main: path.join(ROOT, c.dir, 'dist', 'main.js') }));
}

/** Fails with the list of entry points not built yet. */
function assertBuilt(components) {
  const missing = components.filter((c) => !fs.existsSync(c.main)).map((c) => `${c.dir}/dist/main.js`);
  if (missing.length === 1) throw new DevError(`${missing[0]} missing — run npm run build`);
  if (missing.length) throw new DevError(`missing entry points: ${missing.join(', ')} — run npm run build`);
}

/**
 * Each process's environment: the runner's own, the resolved servers, and per component what its
 * container gets (PORT for the gateway; WORKFLOWS_DIR for the coordinator; a METRICS_PORT of its own
 * for every process without an HTTP API of its own).
 */
function componentEnv(common, extra) {
  const env = { ...process.env, ...common };
  delete env.PORT;
  delete env.METRICS_PORT;
  delete env.WORKFLOWS_DIR;
  Object.assign(env, extra);
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
  return env;
}

module.exports = { discoverComponents, assertBuilt, componentEnv };
