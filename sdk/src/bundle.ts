/**
 * Bundles a function into the one file its image runs, with esbuild: `baton-bundle` (bundle-cli.ts)
 * for a function in its own repository (templates/function/), and the Dockerfile, the bench and the
 * tests for the functions in this one. One owner, so a user's function image is as small and starts
 * as soon as the built-ins' (docs/PERFORMANCE.md, "Function images").
 *
 * Why one file: a process that loads one file instead of ~530 modules is ready sooner after a KEDA
 * scale-up (no resolution, one read, one compile), and its heap keeps no module records, paths and
 * per-file sources.
 *
 * Bundled from the TypeScript sources (the function's src/main.ts and the SDK's src/, which its
 * package ships) and the packages' ES module builds, not from compiled CommonJS: esbuild can leave
 * out only what ES modules do not import, and a `require()` keeps a package whole. With the packages
 * in PURE_PACKAGES declared free of import side effects, a module nothing uses is dropped: bullmq's
 * PostgreSQL backend (its SQL alone is 330 KB of strings in the heap). Type checking stays tsc's. A
 * function without src/main.ts is bundled from dist/main.js.
 *
 * Whitespace and syntax are minified, identifiers not, so a stack trace and an error's class name
 * read as in the sources. A package that reads files of its own at run time (pdfkit its font
 * metrics) cannot live in a bundle: the function lists it in its package.json as
 * `"baton": {"external": ["pdfkit"]}`, and the image keeps a production node_modules for it.
 *
 * Beside the bundle goes `start.js`, the SDK's start script (launcher.ts): the images run it, and it
 * runs the bundle with the V8 code cache the image build wrote (`start.js --write-code-cache`).
 *
 * esbuild is the calling project's dev dependency, not declared by the SDK even as an optional peer
 * (npm then installs it with the SDK's production dependencies, as an image build showed): required only
 * when a bundle is made, never by a function at run time.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { externalsOf } from './external-deps';

export { externalsOf, pruneToExternals } from './external-deps';

/**
 * The node flags a function image runs with (its Dockerfile's CMD and the RUN that writes the code
 * cache, which V8 accepts only for the same flags). V8 sized for memory: a function mostly waits on
 * Redis (docs/PERFORMANCE.md, "Function images"). The Dockerfiles cannot import this; images:test
 * fails an image whose cache its CMD rejects, which catches a drift.
 */
export const IMAGE_NODE_FLAGS: readonly string[] = ['--optimize-for-size'];

/**
 * Imported lazily by the SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set (tracing.ts); and optional
 * native bindings, which a bundle cannot hold and whose absence the importer handles (pg-native;
 * msgpackr-extract, msgpackr's native decoder, whose loader alone spent ~50 ms of a start looking for
 * its prebuilt binary and the C library's flavour, to fail in a bundle anyway).
 */
export const ALWAYS_EXTERNAL: readonly string[] = [
  '@opentelemetry/sdk-node',
  '@opentelemetry/exporter-trace-otlp-http',
  'pg-native',
  'msgpackr-extract',
];

/**
 * Packages whose modules do nothing when imported but define things (checked by reading them, and by
 * test/integration/function-bundle.test.ts running bundles end to end): a module of theirs that
 * nothing uses is left out. bullmq's index imports every backend it has, and its package.json does
 * not say it is side-effect free.
 */
const PURE_PACKAGES = ['bullmq'];

export interface BundleResult {
  /** The bundle, `main.js`. */
  outfile: string;
  bytes: number;
  /** Modules esbuild read into it. */
  inputs: number;
  /** Packages kept outside it (package.json `baton.external`). */
  external: string[];
  /** `start.js` beside the bundle: what the image runs. */
  launcher: string;
}

/** The slice of esbuild's API this uses; its types stay out of the SDK's declarations. */
interface Esbuild {
  build(options: Record<string, unknown>): Promise<{ metafile: { inputs: Record<string, unknown> } }>;
}
interface ResolveArgs {
  path: string;
  importer: string;
  kind: string;
  resolveDir: string;
  pluginData?: { resolving?: boolean };
}
interface PluginBuild {
  onResolve(
    options: { filter: RegExp },
    callback: (args: ResolveArgs) => Promise<{ path: string; sideEffects?: boolean } | undefined>,
  ): void;
  onLoad(
    options: { filter: RegExp },
    callback: (args: { path: string }) => Promise<{ contents: string; loader: 'js' } | undefined>,
  ): void;
  resolve(
    request: string,
    options: { kind: string; importer: string; resolveDir: string; pluginData: unknown },
  ): Promise<{ path: string; external: boolean; errors: unknown[] }>;
}

/** Marks the modules of PURE_PACKAGES as free of side effects (esbuild's onResolve `sideEffects`). */
const purePackages = {
  name: 'baton-pure-packages',
  setup(build: PluginBuild): void {
    const inPure = (file: string) =>
      PURE_PACKAGES.some((p) => file.includes(`${path.sep}node_modules${path.sep}${p}${path.sep}`));
    const namesPure = (request: string) => PURE_PACKAGES.some((p) => request === p || request.startsWith(`${p}/`));
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

/**
 * pg's answer to "is this a Cloudflare Worker?", given at build time. pg (to 8.23 at least) asks at
 * load, in lib/stream.js, and where `navigator` is missing (Node 20) it asks by constructing a
 * `Response`: that loads Node's whole fetch implementation (undici) into every function that uses
 * PostgreSQL, 5.6 MB of idle RSS and some 20 ms of start for a process that never fetches
 * (docs/PERFORMANCE.md; test/integration/function-start-modules.test.ts). A bundle made here runs
 * on Node, where the answer is no, so that probe reads `false`. A pg that words it otherwise is
 * bundled as it is: the cost comes back, and the test says so.
 */
const PG_RESPONSE_PROBE = "typeof Response === 'function'";
const pgOnNode = {
  name: 'baton-pg-on-node',
  setup(build: PluginBuild): void {
    build.onLoad({ filter: /[\\/]node_modules[\\/]pg[\\/]lib[\\/]stream\.js$/ }, async (args) => {
      const source = await fs.promises.readFile(args.path, 'utf8');
      return source.includes(PG_RESPONSE_PROBE)
        ? { contents: source.replace(PG_RESPONSE_PROBE, 'false'), loader: 'js' }
        : undefined;
    });
  },
};

/** `@baton/sdk` as its TypeScript sources, when the installed package has them (it ships src/). */
const sdkSources = {
  name: 'baton-sdk-sources',
  setup(build: PluginBuild): void {
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

function loadEsbuild(functionDir: string): Esbuild {
  let resolved: string;
  try {
    resolved = require.resolve('esbuild', { paths: [functionDir, __dirname] });
  } catch {
    throw new Error(`esbuild is not installed: add it to ${functionDir}'s devDependencies (npm i -D esbuild)`);
  }
  return require(resolved) as Esbuild;
}

/**
 * Bundles the function in `functionDir` (its src/main.ts, else its compiled dist/main.js, or the
 * `entry` given) into `outfile` (default `<functionDir>/bundle/main.js`), with the SDK's start.js
 * beside it.
 */
export async function bundleFunction(
  functionDir: string,
  outfile = path.join(functionDir, 'bundle', 'main.js'),
  options: { entry?: string } = {},
): Promise<BundleResult> {
  if (path.basename(outfile) !== 'main.js') throw new Error(`${outfile}: the start script runs main.js beside it`);
  const source = path.join(functionDir, 'src', 'main.ts');
  const entry = options.entry ?? (fs.existsSync(source) ? source : path.join(functionDir, 'dist', 'main.js'));
  if (!fs.existsSync(entry)) throw new Error(`${entry} does not exist (a function's src/main.ts or dist/main.js)`);
  const external = externalsOf(functionDir);
  const result = await loadEsbuild(functionDir).build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: `node${process.versions.node.split('.')[0]}`,
    format: 'cjs',
    // A package's ES module build where it has one (tree-shakable), else its main.
    mainFields: ['module', 'main'],
    plugins: [sdkSources, purePackages, pgOnNode],
    // Not minifyIdentifiers: names stay as written (a class's `name`, what a stack trace shows), and
    // esbuild's keepNames, the other way to keep them, costs 6 MB of RSS in its wrappers.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    external: [...ALWAYS_EXTERNAL, ...external],
    metafile: true,
    logLevel: 'warning',
  });
  // The start script, compiled beside this file (dist/launcher.js).
  const launcher = path.join(path.dirname(outfile), 'start.js');
  fs.copyFileSync(path.join(__dirname, 'launcher.js'), launcher);
  return {
    outfile,
    bytes: fs.statSync(outfile).size,
    inputs: Object.keys(result.metafile.inputs).length,
    external,
    launcher,
  };
}

/**
 * Writes the code cache beside a bundle as a function image's build does (`node [flags] start.js
 * --write-code-cache`: the function's start runs for a moment against no Redis). V8 takes the cache
 * only from the same flags, so `flags` (default IMAGE_NODE_FLAGS) must be those the process will run
 * with. Returns what start.js printed on stdout (nothing, when all went well).
 */
export function writeCodeCache(
  launcher: string,
  opts: { flags?: readonly string[]; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): string {
  return execFileSync(process.execPath, [...(opts.flags ?? IMAGE_NODE_FLAGS), launcher, '--write-code-cache'], {
    cwd: opts.cwd,
    env: opts.env ?? { PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString();
}
