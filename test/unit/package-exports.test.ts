import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.join(__dirname, '../..');

/** The modules a file imports: `import … from 'x'`, `export … from 'x'`, `require('x')`. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return [...text.matchAll(/(?:\bfrom\s+|\brequire\(\s*)'([^']+)'/g)].map((m) => m[1]);
}

const sourcesOf = (dir: string) =>
  fs
    .readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts'))
    .map((f) => path.posix.join(dir, f));

/**
 * The packages' entry points name every export (by role, in the workflow language's and the engine's
 * case): what a package offers reads at a glance, and nothing leaks out of a module by accident.
 * `export *` would undo that.
 */
describe('package entry points', () => {
  it.each(['sdk/src/index.ts', 'workflow/src/index.ts', 'engine/src/index.ts'])(
    '%s names every export (no export *)',
    (file) => {
      const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
      expect(text.match(/^\s*export \*/gm) ?? []).toEqual([]);
      expect(text).toMatch(/^export \{/m);
    },
  );
});

/**
 * The layers (docs/ARCHITECTURE.md): the SDK imports nothing of the engine's packages; the workflow
 * language does no I/O, so it imports no database, Redis or queue client and nothing of the engine.
 */
describe('package layers', () => {
  it('the SDK imports neither @baton/workflow nor @baton/engine', () => {
    const found = sourcesOf('sdk/src').flatMap((f) =>
      importsOf(f)
        .filter((m) => /^@baton\/(workflow|engine|shared)\b/.test(m))
        .map((m) => `${f}: ${m}`),
    );
    expect(found).toEqual([]);
  });

  it('@baton/workflow imports only pure packages, its own modules and the SDK', () => {
    const allowed = /^(\.\/|node:(path|buffer|crypto)$|@baton\/sdk$|zod$|jsonata$|workerpool$|cron-parser$)/;
    const found = sourcesOf('workflow/src').flatMap((f) =>
      importsOf(f)
        .filter((m) => !allowed.test(m))
        .map((m) => `${f}: ${m}`),
    );
    expect(found).toEqual([]);
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'workflow/package.json'), 'utf8'));
    for (const io of ['pg', 'ioredis', 'bullmq', '@baton/engine']) expect(manifest.dependencies).not.toHaveProperty(io);
  });
});
