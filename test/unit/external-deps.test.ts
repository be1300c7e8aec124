import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { externalClosure, pruneToExternals, type LockedPackages } from '@baton/sdk/dist/external-deps';

/**
 * What a function image keeps of node_modules when its bundle leaves packages outside
 * (package.json `baton.external`): their closure in package-lock.json, nothing else.
 */

const ROOT = path.resolve(__dirname, '../..');

/** A project on disk: package-lock.json's `packages`, a folder per installed key, a function folder. */
function project(packages: LockedPackages, external: string[]): { root: string; functionDir: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-external-deps-'));
  fs.writeFileSync(
    path.join(root, 'package-lock.json'),
    JSON.stringify({ lockfileVersion: 3, packages: { '': {}, ...packages } }),
  );
  for (const key of Object.keys(packages)) {
    if (!key.startsWith('node_modules/')) continue;
    fs.mkdirSync(path.join(root, key), { recursive: true });
    fs.writeFileSync(path.join(root, key, 'index.js'), '');
  }
  fs.mkdirSync(path.join(root, 'node_modules', '.bin'), { recursive: true });
  fs.writeFileSync(path.join(root, 'node_modules', '.package-lock.json'), '{}');
  const functionDir = path.join(root, 'functions', 'make-pdf');
  fs.mkdirSync(functionDir, { recursive: true });
  fs.writeFileSync(path.join(functionDir, 'package.json'), JSON.stringify({ name: 'make-pdf', baton: { external } }));
  return { root, functionDir };
}

/** Installed package folders under node_modules, as lockfile keys. */
function installed(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string, prefix: string): void => {
    if (!fs.existsSync(dir)) return;
    for (const entry of fs.readdirSync(dir)) {
      if (entry.startsWith('.')) continue;
      if (entry.startsWith('@')) {
        for (const scoped of fs.readdirSync(path.join(dir, entry))) {
          found.push(`${prefix}${entry}/${scoped}`);
          walk(path.join(dir, entry, scoped, 'node_modules'), `${prefix}${entry}/${scoped}/node_modules/`);
        }
        continue;
      }
      found.push(`${prefix}${entry}`);
      walk(path.join(dir, entry, 'node_modules'), `${prefix}${entry}/node_modules/`);
    }
  };
  walk(path.join(root, 'node_modules'), 'node_modules/');
  return found.sort();
}

describe('pruneToExternals', () => {
  const packages: LockedPackages = {
    'functions/make-pdf': { dependencies: { pdfkit: '^1', pg: '^8', zod: '^4' } },
    'node_modules/pdfkit': { dependencies: { fontkit: '^2', linebreak: '^1' }, optionalDependencies: { canvas: '^2' } },
    'node_modules/fontkit': { dependencies: { '@swc/helpers': '^0.5' }, peerDependencies: { tslib: '^2' } },
    'node_modules/@swc/helpers': {},
    'node_modules/tslib': {},
    'node_modules/linebreak': { dependencies: { 'base64-js': '0.0.8' } },
    // Two versions: linebreak's own, and the hoisted one only pg-protocol wants.
    'node_modules/linebreak/node_modules/base64-js': {},
    'node_modules/base64-js': {},
    'node_modules/pg': { dependencies: { 'pg-protocol': '^1' } },
    'node_modules/pg-protocol': { dependencies: { 'base64-js': '^1' } },
    'node_modules/zod': {},
    'node_modules/@opentelemetry/api': {},
    'node_modules/@baton/sdk': { link: true, resolved: 'sdk' },
    sdk: { dependencies: { zod: '^4' } },
  };

  it('keeps the externals and what they need, and removes every other package', () => {
    const { root, functionDir } = project(packages, ['pdfkit']);
    const { kept, removed } = pruneToExternals(functionDir);
    const expected = [
      'node_modules/@swc/helpers',
      'node_modules/fontkit',
      'node_modules/linebreak',
      'node_modules/linebreak/node_modules/base64-js',
      'node_modules/pdfkit',
      'node_modules/tslib',
    ];
    expect(kept).toEqual(expected);
    expect(installed(root)).toEqual(expected);
    // pg, pg-protocol, the hoisted base64-js, zod, @opentelemetry/api and the workspace link.
    expect(removed).toBe(6);
    // npm's own bookkeeping of what is gone goes with it, and so do emptied scopes.
    expect(fs.existsSync(path.join(root, 'node_modules', '.bin'))).toBe(false);
    expect(fs.existsSync(path.join(root, 'node_modules', '.package-lock.json'))).toBe(false);
    expect(fs.existsSync(path.join(root, 'node_modules', '@opentelemetry'))).toBe(false);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('keeps nothing for a function without externals', () => {
    const { root, functionDir } = project(packages, []);
    expect(pruneToExternals(functionDir).kept).toEqual([]);
    expect(installed(root)).toEqual([]);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('refuses a lockfile that lacks a required dependency, and removes nothing', () => {
    const { root, functionDir } = project(
      { ...packages, 'node_modules/fontkit': { dependencies: { 'unicode-trie': '^2' } } },
      ['pdfkit'],
    );
    const before = installed(root);
    expect(() => pruneToExternals(functionDir)).toThrow(
      'package-lock.json has no unicode-trie for node_modules/fontkit: run npm install',
    );
    expect(installed(root)).toEqual(before);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('refuses a package npm left under the workspace, which an image does not copy', () => {
    const { root, functionDir } = project(
      { ...packages, 'functions/make-pdf/node_modules/pdfkit': { dependencies: {} } },
      ['pdfkit'],
    );
    expect(() => pruneToExternals(functionDir)).toThrow(
      /functions\/make-pdf\/node_modules\/pdfkit: not in .* which is all an image keeps/,
    );
    fs.rmSync(root, { recursive: true, force: true });
  });
});

describe("generate-pdf's externals, from this repository's lockfile", () => {
  it('renders an invoice with no package outside the closure its image keeps', () => {
    const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
      packages: LockedPackages;
    };
    const keep = [...externalClosure(lock.packages, 'functions/generate-pdf', ['pdfkit'])];
    expect(keep).toContain('node_modules/pdfkit');
    // The renderer in a process whose module resolution refuses any node_modules file outside the
    // closure (what a pruned image holds): a dependency pdfkit needs but does not declare fails it.
    const guard = `
      const Module = require('node:module');
      const path = require('node:path');
      const allowed = ${JSON.stringify(keep.map((key) => path.join(ROOT, key) + path.sep))};
      const resolve = Module._resolveFilename;
      Module._resolveFilename = function (...args) {
        const file = resolve.apply(this, args);
        if (file.includes(path.sep + 'node_modules' + path.sep) && !allowed.some((dir) => file.startsWith(dir)))
          throw new Error('outside the closure: ' + file);
        return file;
      };
      const { renderInvoicePdf } = require(${JSON.stringify(path.join(ROOT, 'functions/generate-pdf/dist/pdf.js'))});
      renderInvoicePdf({
        number: 'INV-1', issuedAt: new Date(0), currency: 'EUR',
        customer: { id: 'c1', name: 'Ada', email: 'ada@example.com', address: null },
        lines: [{ orderId: 'o1', description: 'Widget', quantity: 2, unitPriceCents: 500, amountCents: 1000 }],
        subtotalCents: 1000, taxCents: 200, totalCents: 1200,
      }).then((pdf) => process.stdout.write(pdf.subarray(0, 5).toString('latin1')));
    `;
    expect(execFileSync(process.execPath, ['-e', guard], { cwd: ROOT }).toString()).toBe('%PDF-');
  });
});
