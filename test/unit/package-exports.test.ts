import fs from 'node:fs';
import path from 'node:path';

/**
 * The packages' entry points name every export (by role, in shared's case): what a package offers
 * reads at a glance, and nothing leaks out of a module by accident. `export *` would undo that.
 */
describe('package entry points', () => {
  it.each(['sdk/src/index.ts', 'shared/src/index.ts'])('%s names every export (no export *)', (file) => {
    const text = fs.readFileSync(path.join(__dirname, '../..', file), 'utf8');
    expect(text.match(/^\s*export \*/gm) ?? []).toEqual([]);
    expect(text).toMatch(/^export \{/m);
  });
});
