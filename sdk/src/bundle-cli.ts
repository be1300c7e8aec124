#!/usr/bin/env node
/**
 * `baton-bundle [function dir] [--out <file>]`: the function's one-file bundle and start.js, what its
 * image runs (bundle.ts says how and why). The directory defaults to the current one, the output to
 * `<dir>/bundle/main.js`.
 *
 * `baton-bundle [function dir] --prune-node-modules`: in an image build, after `npm ci --omit=dev`,
 * keeps in the project's node_modules only the packages the function keeps outside its bundle
 * (package.json `baton.external`) and what they need (external-deps.ts).
 */
import path from 'node:path';
import { bundleFunction } from './bundle';
import { pruneToExternals } from './external-deps';

const USAGE =
  'usage: baton-bundle [function dir] [--out <file>]\n       baton-bundle [function dir] --prune-node-modules\n';

function prune(args: string[]): void {
  const positional = args.filter((a) => !a.startsWith('--'));
  if (positional.length > 1 || args.some((a) => a.startsWith('--') && a !== '--prune-node-modules')) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  try {
    const { kept, removed } = pruneToExternals(path.resolve(positional[0] ?? '.'));
    process.stdout.write(
      `node_modules: kept ${kept.length} package(s)${kept.length ? ` (${kept.map((k) => k.replace(/^node_modules\//, '')).join(', ')})` : ''}, removed ${removed}\n`,
    );
  } catch (err) {
    process.stderr.write(`prune failed: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

function main(args: string[]): void {
  if (args.includes('--prune-node-modules')) {
    prune(args);
    return;
  }
  const outIndex = args.indexOf('--out');
  const out = outIndex >= 0 ? args[outIndex + 1] : undefined;
  const positional = args.filter((a, i) => !a.startsWith('--') && (outIndex < 0 || i !== outIndex + 1));
  if ((outIndex >= 0 && !out) || positional.length > 1 || args.some((a) => a.startsWith('--') && a !== '--out')) {
    process.stderr.write(USAGE);
    process.exit(2);
  }
  const dir = path.resolve(positional[0] ?? '.');
  bundleFunction(dir, out ? path.resolve(out) : undefined).then(
    ({ outfile, bytes, external, inputs }) =>
      process.stdout.write(
        `${path.relative(process.cwd(), outfile)}: ${inputs} modules in ${(bytes / 1024).toFixed(0)} KB` +
          `${external.length ? `; kept outside: ${external.join(', ')}` : ''}\n`,
      ),
    (err: Error) => {
      process.stderr.write(`bundle failed: ${err.message}\n`);
      process.exit(1);
    },
  );
}

main(process.argv.slice(2));
