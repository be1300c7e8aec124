#!/usr/bin/env node
'use strict';
/**
 * Bundles a function (its `src/main.ts`, else its compiled `dist/main.js`) into one file with esbuild:
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
 *
 * Bundled from the TypeScript sources (the function's src/main.ts and the SDK's src/, which its
 * package ships) and the packages' ES module builds, not from the compiled CommonJS: esbuild can
 * leave out only what ES modules do not import, and a `require()` keeps a package whole. With the
 * packages in PURE_PACKAGES declared free of import side effects, a module nothing uses is dropped:
 * bullmq's PostgreSQL backend (its SQL alone is 330 KB of strings in the heap) and pg, which the
 * SDK's postgres helpers import but transform never calls. Type checking stays tsc's (`tsc -b` runs
 * first). A function without src/main.ts is bundled from dist/main.js as before.
 *
 * Beside the bundle goes `start.js`, the SDK's start script (sdk/src/launcher.ts): the images run it,
 * and it runs the bundle with the V8 code cache the image build wrote (`start.js --write-code-cache`).
 */
const fs = require('node:fs');
const path = require('node:path');
const esbuild = require('esbuild');

/**
 * Imported lazily by @baton/sdk when OTEL_EXPORTER_OTLP_ENDPOINT is set (sdk/src/tracing.ts); and
 * optional native bindings, which a bundle cannot hold and whose absence the importer handles
 * (pg-native; msgpackr-extract, msgpackr's native decoder, whose loader alone spent ~50 ms of a
 * start looking for its prebuilt binary and the C library's flavour, to fail in a bundle anyway).
 */
const ALWAYS_EXTERNAL = [
  '@opentelemetry/sdk-node',
  '@opentelemetry/exporter-trace-otlp-http',
  'pg-native',
  'msgpackr-extract',
];

/**
 * Packages whose modules do nothing when imported but define things (checked by reading them, and
 * by test/integration/function-bundle.test.ts running bundles end to end): a module of theirs that
 * nothing uses is left out of the bundle. bullmq's index imports every backend it has, and its
 * package.json does not say it is side-effect free.
 */
const PURE_PACKAGES = ['bullmq'];

/** Marks the modules of PURE_PACKAGES as free of side effects (esbuild's onResolve `sideEffects`). */
const purePackages = {
  name: 'baton-pure-packages',
  setup(build) {
    const inPure = (file) =>
      PURE_PACKAGES.some((p) => file.includes(`${path.sep}node_modules${path.sep}${p}${path.sep}`));
    const namesPure = (request) => PURE_PACKAGES.some((p) => request === p || request.startsWith(`${p}/`));
    build.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData?.resolving || !(inPure(args.importer) || namesPure(args.path))) return undefined;
      const resolved = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: { resolving: true },
      });
      // Unresolved (an optional package a try/catch require()s) or external: esbuild's own handling.
      if (resolved.errors.length || resolved.external) return undefined;
      return { ...resolved, sideEffects: !inPure(resolved.path) };
    });
  },
};

/** `@baton/sdk` as its TypeScript sources, when the installed package has them (it ships src/). */
const sdkSources = {
  name: 'baton-sdk-sources',
  setup(build) {
    build.onResolve({ filter: /^@baton\/sdk$/ }, async (args) => {
      if (args.pluginData?.resolving) return undefined;
      const resolved = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: { resolving: true },
      });
      if (resolved.errors.length) return undefined;
      const index = path.join(resolved.path, '..', '..', 'src', 'index.ts');
      return fs.existsSync(index) ? { path: index } : resolved;
    });
  },
};

/** The packages a function keeps outside its bundle (package.json `baton.external`). */
function externalsOf(workspaceDir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(workspaceDir, 'package.json'), 'utf8'));
  const listed = manifest.baton?.external ?? [];
  if (!Array.isArray(listed) || listed.some((p) => typeof p !== 'string'))
    throw new Error(`${workspaceDir}/package.json: baton.external must be a list of package names`);
  return listed;
}

async function bundleFunction(workspaceDir, outfile = path.join(workspaceDir, 'bundle', 'main.js')) {
  const source = path.join(workspaceDir, 'src', 'main.ts');
  const entry = fs.existsSync(source) ? source : path.join(workspaceDir, 'dist', 'main.js');
  if (!fs.existsSync(entry)) throw new Error(`${entry} does not exist: compile the function first (tsc -b)`);
  const external = externalsOf(workspaceDir);
  const result = await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: `node${process.versions.node.split('.')[0]}`,
    format: 'cjs',
    // A package's ES module build where it has one (tree-shakable), else its main.
    mainFields: ['module', 'main'],
    plugins: [sdkSources, purePackages],
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
  return {
    outfile,
    bytes,
    external,
    inputs: Object.keys(result.metafile.inputs).length,
    launcher: copyLauncher(workspaceDir, outfile),
  };
}

/**
 * The SDK's start script (sdk/src/launcher.ts), copied beside the bundle as `start.js`: the images
 * run it, which runs the bundle with the V8 code cache written at image build (Dockerfile).
 */
function copyLauncher(workspaceDir, outfile) {
  const sdk = path.dirname(require.resolve('@baton/sdk/package.json', { paths: [workspaceDir] }));
  const launcher = path.join(sdk, 'dist', 'launcher.js');
  if (!fs.existsSync(launcher)) throw new Error(`${launcher} does not exist: build the SDK first (tsc -b)`);
  if (path.basename(outfile) !== 'main.js') throw new Error(`${outfile}: the start script runs main.js beside it`);
  const target = path.join(path.dirname(outfile), 'start.js');
  fs.copyFileSync(launcher, target);
  return target;
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
