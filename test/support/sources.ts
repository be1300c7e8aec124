import fs from 'node:fs';
import path from 'node:path';

/** The repository root. */
export const ROOT = path.resolve(__dirname, '../..');

/**
 * Where shipped TypeScript lives: the SDK, the workflow language, the engine library, each service's
 * and function's src/, the CLI.
 */
const SOURCE_DIRS = ['sdk/src', 'workflow/src', 'engine/src', 'services', 'functions', 'cli/src'];

/**
 * Every shipped `.ts` source file (no declarations, tests, scripts, dist or node_modules), relative
 * to the root and sorted: what the source-scanning tests (sql-safety, error-codes) read.
 */
export function shippedSourceFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.name === 'node_modules' || entry.name === 'dist' || entry.name.startsWith('.')) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(full);
    }
  };
  for (const dir of SOURCE_DIRS) {
    const full = path.join(ROOT, dir);
    if (!fs.existsSync(full)) continue;
    if (dir === 'services' || dir === 'functions') {
      // Only each workspace's src/: its tests and scripts are not shipped.
      for (const ws of fs.readdirSync(full)) {
        const src = path.join(full, ws, 'src');
        if (fs.existsSync(src)) walk(src);
      }
    } else {
      walk(full);
    }
  }
  return files.map((f) => path.relative(ROOT, f)).sort();
}
