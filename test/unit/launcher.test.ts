import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The start script of a bundled function image (sdk/src/launcher.ts, compiled by the `tsc -b` that
 * `npm test` runs first), beside a tiny bundle. It runs the bundle as node would run main.js, from
 * V8's code cache when one was written; on a node without the loader it needs (before 20.12, which
 * the SDK's `engines` still admits) it runs the bundle without a cache instead of failing. That node
 * is imitated by hiding `vm.constants` in a preloaded module.
 */
const LAUNCHER = path.resolve(__dirname, '../../sdk/dist/launcher.js');

describe('function start script (start.js)', () => {
  let dir: string;
  let hideLoader: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-launcher-'));
    fs.copyFileSync(LAUNCHER, path.join(dir, 'start.js'));
    // What a bundle relies on: its own module, file name and directory, and require.
    fs.writeFileSync(
      path.join(dir, 'main.js'),
      "process.stdout.write(JSON.stringify({ file: __filename, dir: __dirname, exportsIsModule: exports === module.exports, fs: typeof require('node:fs').readFileSync }));",
    );
    hideLoader = path.join(dir, 'old-node.js');
    fs.writeFileSync(
      hideLoader,
      "Object.defineProperty(require('node:vm'), 'constants', { value: undefined, configurable: true });",
    );
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const node = (args: string[]) =>
    execFileSync(process.execPath, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const expected = () => ({
    file: path.join(dir, 'main.js'),
    dir,
    exportsIsModule: true,
    fs: 'function',
  });

  it('runs the bundle from the code cache written at build', () => {
    fs.rmSync(path.join(dir, 'main.js.cache'), { force: true });
    expect(node([path.join(dir, 'start.js'), '--check-code-cache']).trim()).toBe('none');
    node([path.join(dir, 'start.js'), '--write-code-cache']);
    expect(fs.existsSync(path.join(dir, 'main.js.cache'))).toBe(true);
    expect(node([path.join(dir, 'start.js'), '--check-code-cache']).trim()).toBe('accepted');
    expect(JSON.parse(node([path.join(dir, 'start.js')]))).toEqual(expected());
  });

  it('runs the bundle without a cache on a node that lacks the loader, and says why', () => {
    const old = ['--require', hideLoader, path.join(dir, 'start.js')];
    expect(JSON.parse(node(old))).toEqual(expected());
    expect(node([...old, '--check-code-cache'])).toMatch(/^none: node v[\d.]+ cannot run a bundle from a code cache/);
    fs.rmSync(path.join(dir, 'main.js.cache'), { force: true });
    node([...old, '--write-code-cache']);
    expect(fs.existsSync(path.join(dir, 'main.js.cache'))).toBe(false);
  });
});
