import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { newFunctionProject, templateDir } from '../../cli/src/scaffold';

/** `baton new function <name>`: the template copied under the new name, nothing else touched. */
describe('baton new function', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'baton-scaffold-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('copies templates/function under the new name, without build output or packed tarballs', () => {
    const target = path.join(tmp, 'invoice-archiver');
    const created = newFunctionProject('invoice-archiver', target);
    expect(created.files).toEqual(
      expect.arrayContaining(['package.json', 'Dockerfile', 'chart-values.yaml', path.join('src', 'main.ts')]),
    );
    expect(created.files.some((f) => f.includes('node_modules') || f.endsWith('.tgz'))).toBe(false);
    const pkg = JSON.parse(fs.readFileSync(path.join(target, 'package.json'), 'utf8'));
    expect(pkg.name).toBe('invoice-archiver');
    expect(pkg.dependencies['@baton/sdk']).toBeDefined();
    expect(fs.readFileSync(path.join(target, 'src', 'index.ts'), 'utf8')).toContain("NAME = 'invoice-archiver'");
    const values = fs.readFileSync(path.join(target, 'chart-values.yaml'), 'utf8');
    expect(values).toContain('invoice-archiver:');
    expect(values).toContain('repository: ghcr.io/your-org/invoice-archiver');
    // Every file of the template is there, and none still names the template's function.
    for (const file of created.files) {
      expect(fs.readFileSync(path.join(target, file), 'utf8')).not.toContain('acme-shout');
    }
    expect(fs.existsSync(path.join(templateDir(), 'package.json'))).toBe(true);
  });

  it('refuses a bad name and a folder that is not empty, saying what to change', () => {
    expect(() => newFunctionProject('Bad_Name', path.join(tmp, 'x'))).toThrow(/invalid function name 'Bad_Name'/);
    fs.writeFileSync(path.join(tmp, 'keep.txt'), 'mine');
    expect(() => newFunctionProject('fine', tmp)).toThrow(/exists and is not empty: choose another --dir/);
    expect(fs.readFileSync(path.join(tmp, 'keep.txt'), 'utf8')).toBe('mine');
  });
});
