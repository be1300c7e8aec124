/**
 * The start script of a bundled function image: runs `main.js` (the bundle beside this file) with
 * V8's code cache, `main.js.cache`, written when the image was built. Without the cache a process
 * compiles the whole 2 MB bundle and then each function it calls at start; with it V8 deserializes
 * that code instead: transform's start to ready fell from about 300 to 240 ms here
 * (docs/PERFORMANCE.md, "Function images"). Only Node's own modules are used: this file is copied
 * beside the bundle, with no node_modules.
 *
 *   node [flags] start.js                       runs the function, as `node [flags] main.js` would
 *   node [flags] start.js --write-code-cache    at image build: runs the function for a moment (its
 *                                               start, not its jobs: Redis is pointed at a closed
 *                                               port), writes main.js.cache, exits 0
 *   node [flags] start.js --check-code-cache    prints whether V8 takes the cache (accepted,
 *                                               rejected, none) and exits
 *
 * V8 takes a cache only from the same node build, the same V8 flags and the same source; anything
 * else (a node upgrade in the base image, other flags, an edited bundle) is rejected and the bundle
 * is compiled as without one: a stale cache costs time, never correctness. So the cache is written
 * in the image, by the node and flags of its CMD.
 */
import fs from 'node:fs';
import Module from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

/** How long `--write-code-cache` lets the function start before it records what V8 compiled. */
const DEFAULT_WRITE_AFTER_MS = 1_500;

type Mode = 'run' | 'write' | 'check';

function modeOf(args: string[]): Mode {
  if (args.includes('--write-code-cache')) return 'write';
  if (args.includes('--check-code-cache')) return 'check';
  return 'run';
}

/** `Module.wrap` and the loader internals this uses, which @types/node leaves out. */
type ModuleInternals = typeof Module & {
  wrap(source: string): string;
  _nodeModulePaths(dir: string): string[];
};

/**
 * The loader a `vm.Script`'s dynamic `import()` needs to resolve as in a file node loaded itself;
 * Node has it from 20.12 (and 21.7). Without it the bundle runs as plain `require`, with no cache.
 */
const mainContextLoader = (vm.constants as Partial<typeof vm.constants> | undefined)?.USE_MAIN_CONTEXT_DEFAULT_LOADER;

function launch(): void {
  const mode = modeOf(process.argv.slice(2));
  const file = path.join(__dirname, 'main.js');
  const cacheFile = `${file}.cache`;
  if (mainContextLoader === undefined) {
    const reason = `node ${process.version} cannot run a bundle from a code cache (needs >= 20.12)`;
    if (mode === 'run') {
      require(file);
      return;
    }
    // The image builds and runs still, only without the cache; check says why.
    process.stdout.write(mode === 'check' ? `none: ${reason}\n` : '');
    process.stderr.write(mode === 'write' ? `code cache not written: ${reason}\n` : '');
    return;
  }
  if (mode === 'write') {
    // The function's start runs, its work does not: no Redis to take jobs from (a closed port), and
    // the connection errors it logs are nobody's concern at build time.
    process.env.REDIS_URL = 'redis://127.0.0.1:1';
    delete process.env.REDIS_HOST;
    delete process.env.REDIS_PORT;
    delete process.env.REDIS_CLUSTER_NODES;
    process.env.LOG_LEVEL = 'silent';
  }
  const cachedData = mode === 'write' ? undefined : readIfThere(cacheFile);
  const script = new vm.Script((Module as ModuleInternals).wrap(fs.readFileSync(file, 'utf8')), {
    filename: file,
    ...(cachedData ? { cachedData } : {}),
    // `import()` in the bundle (the OpenTelemetry SDK, loaded only when configured) resolves as it
    // would in a file node loaded itself.
    importModuleDynamically: mainContextLoader,
  });
  if (mode === 'check') {
    process.stdout.write(`${!cachedData ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted'}\n`);
    return;
  }
  if (mode === 'write') recordOnExit(script, cacheFile);
  // The bundle as node would run main.js: its own module, require, __filename and __dirname.
  const bundle = new Module(file, module);
  bundle.filename = file;
  bundle.paths = (Module as ModuleInternals)._nodeModulePaths(path.dirname(file));
  const run = script.runInThisContext() as (
    exports: unknown,
    require: NodeJS.Require,
    module: Module,
    filename: string,
    dirname: string,
  ) => void;
  run.call(bundle.exports, bundle.exports, Module.createRequire(file), bundle, file, path.dirname(file));
  bundle.loaded = true;
}

/** Writes the cache once the function has started (or exited early: what V8 compiled by then). */
function recordOnExit(script: vm.Script, cacheFile: string): void {
  const started = Date.now();
  let written = false;
  const write = (): void => {
    if (written) return;
    written = true;
    const data = script.createCachedData();
    fs.writeFileSync(cacheFile, data);
    process.stderr.write(
      `code cache: ${(data.length / 1024).toFixed(0)} KB written to ${cacheFile} after ${Date.now() - started} ms\n`,
    );
  };
  // A function whose start exits (its own configuration missing at build time) still leaves what
  // was compiled until then, and the image build goes on.
  process.on('exit', () => {
    write();
    process.exitCode = 0;
  });
  const afterMs = Number(process.env.BATON_CODE_CACHE_AFTER_MS) || DEFAULT_WRITE_AFTER_MS;
  setTimeout(() => process.exit(0), afterMs);
}

function readIfThere(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

launch();
