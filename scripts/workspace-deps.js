#!/usr/bin/env node
'use strict';
/**
 * `node scripts/workspace-deps.js <workspace>`: the folders of the workspaces <workspace> depends on,
 * directly or through another, one per line (`functions/transform` → `sdk`; `services/gateway` →
 * `shared`, `sdk`). The Dockerfile copies their package.json and dist/ into the image, and nothing
 * else of the repository.
 */
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

/** Every workspace of the root package.json: its package name → its folder. */
function workspaces() {
  const byName = new Map();
  for (const pattern of require(path.join(ROOT, 'package.json')).workspaces) {
    const dirs = pattern.endsWith('/*')
      ? fs.readdirSync(path.join(ROOT, pattern.slice(0, -2))).map((d) => path.posix.join(pattern.slice(0, -2), d))
      : [pattern];
    for (const dir of dirs) {
      const file = path.join(ROOT, dir, 'package.json');
      if (fs.existsSync(file)) byName.set(JSON.parse(fs.readFileSync(file, 'utf8')).name, dir);
    }
  }
  return byName;
}

function workspaceDeps(workspace) {
  const byName = workspaces();
  const found = [];
  const visit = (dir) => {
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, dir, 'package.json'), 'utf8'));
    for (const name of Object.keys(manifest.dependencies ?? {})) {
      const depDir = byName.get(name);
      if (depDir && !found.includes(depDir)) {
        found.push(depDir);
        visit(depDir);
      }
    }
  };
  visit(workspace.replace(/\/$/, ''));
  return found;
}

if (require.main === module) {
  const workspace = process.argv[2];
  if (!workspace) {
    process.stderr.write('usage: node scripts/workspace-deps.js <workspace folder>\n');
    process.exit(2);
  }
  process.stdout.write(
    workspaceDeps(workspace)
      .map((d) => `${d}\n`)
      .join(''),
  );
}

module.exports = { workspaceDeps };
