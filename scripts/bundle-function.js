#!/usr/bin/env node
'use strict';
/**
 * Bundles a function's compiled entry (`<workspace>/dist/main.js`) into one file with esbuild:
 *   node scripts/bundle-function.js functions/transform [--out <file>]
 * (default out: `<workspace>/bundle/main.js`). The function images run that file instead of the
 * compiled tree (Dockerfile, templates/function/Dockerfile), for two reasons measured in
 * docs/PERFORMANCE.md ("Function images"): a process that loads one file instead of ~530 modules is
 * ready sooner after a KEDA scale-up (no resolution, one read, one compile), and its heap keeps no
 * module records, paths and per-file sources.
 *
 * Whitespace and syntax are minified, identifiers not, so a stack trace and an error's class name
 * read as in the sources (the source text is kept in the heap: a smaller one is a smaller RSS). A package that reads files of its own at run time
 * (pdfkit its font metrics) cannot live in a bundle: the function lists it in its package.json as
 * `"baton": {"external": ["pdfkit"]}`, and the image keeps the function's production node_modules
 * for it. Always left out: what the SDK imports only when tracing is configured, and pg's optional
 * native binding — neither is a dependency a function installs.
 */
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

/** Imported lazily by @baton/sdk when OTEL_EXPORTER_OTLP_ENDPOINT is set (sdk/src/tracing.ts). */
const ALWAYS_EXTERNAL = ['@opentelemetry/sdk-node', '@opentelemetry/exporter-trace-otlp-http', 'pg-native'];

/** The packages a function keeps outside its bundle (package.json `baton.external`). */
function externalsOf(workspaceDir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(workspaceDir, 'package.json'), 'utf8'));
  const listed = manifest.baton?.external ?? [];
  if (!Array.isArray(listed) || listed.some((p) => typeof p !== 'string'))
    throw new Error(`${workspaceDir}/package.json: baton.external must be a list of package names`);
  return listed;
}

async function bundleFunction(workspaceDir, outfile = path.join(workspaceDir, 'bundle', 'main.js')) {
  const entry = path.join(workspaceDir, 'dist', 'main.js');
  if (!fs.existsSync(entry)) throw new Error(`${entry} does not exist: compile the function first (tsc -b)`);
  const external = externalsOf(workspaceDir);
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: `node${process.versions.node.split('.')[0]}`,
    format: 'cjs',
    // Not minifyIdentifiers: names stay as written (a class's `name`, what a stack trace shows), and
    // esbuild's keepNames, the other way to keep them, costs 6 MB of RSS in its wrappers.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    external: [...ALWAYS_EXTERNAL, ...external],
    metafile: true,
    logLevel: 'warning',
  });
  const bytes = fs.statSync(outfile).size;
  return { outfile, bytes, external, inputs: Object.keys(result.metafile.inputs).length };
}

module.exports = { bundleFunction, externalsOf, ALWAYS_EXTERNAL };

if (require.main === module) {
  const args = process.argv.slice(2);
  const workspace = args.find((a) => !a.startsWith('--'));
  const outIndex = args.indexOf('--out');
  if (!workspace) {
    process.stderr.write('usage: node scripts/bundle-function.js <function workspace dir> [--out <file>]\n');
    process.exit(2);
  }
  bundleFunction(path.resolve(workspace), outIndex >= 0 ? path.resolve(args[outIndex + 1]) : undefined).then(
    ({ outfile, bytes, external, inputs }) =>
      process.stdout.write(
        `${path.relative(process.cwd(), outfile)}: ${inputs} modules in ${(bytes / 1024).toFixed(0)} KB` +
          `${external.length ? `; kept outside: ${external.join(', ')}` : ''}\n`,
      ),
    (err) => {
      process.stderr.write(`bundle failed: ${err.message}\n`);
      process.exit(1);
    },
  );
}
