import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const ALERTS = path.join(__dirname, '../../helm/baton/files/alerts');

/**
 * The alert rules are checked and unit-tested with promtool (Debian package `prometheus`, which
 * .ci/run installs): each alert fires on the series it is meant for, at the time it should, and
 * stays quiet on the healthy ones beside them.
 */
describe('Prometheus alert rules', () => {
  const run = (args: string[]) =>
    exec('promtool', args, { cwd: ALERTS }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number | string; stdout?: string; stderr?: string; message: string }) => ({
        code: e.code,
        out: `${e.stdout ?? ''}${e.stderr ?? ''}${e.code === 'ENOENT' ? 'promtool is not installed: apt-get install prometheus' : ''}`,
      }),
    );

  it('are valid rules', async () => {
    const result = await run(['check', 'rules', 'baton.rules.yaml']);
    expect(result.out).toMatch(/SUCCESS: 7 rules found/);
    expect(result.code).toBe(0);
  });

  it('pass their promtool unit tests', async () => {
    const result = await run(['test', 'rules', 'baton.rules.test.yaml']);
    expect(result.out).toMatch(/SUCCESS/);
    expect(result.code).toBe(0);
  });
});
