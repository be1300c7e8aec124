/**
 * The packages a function keeps outside its bundle (package.json `baton.external`, for a package that
 * reads its own files at run time, such as pdfkit its font metrics) and what of node_modules its image
 * must keep for them.
 *
 * `npm ci --omit=dev --workspace <function>` installs the function's production dependencies whole,
 * the bundled ones with them: generate-pdf's image held 58 MB of node_modules, of which pdfkit and what
 * it needs are 25 (docs/PERFORMANCE.md). `pruneToExternals` keeps only that closure, read from the
 * project's package-lock.json (what npm installed, not what a registry says today).
 *
 * Node built-ins only: the image build runs this with the compiled SDK alone.
 */
import fs from 'node:fs';
import path from 'node:path';

/** A package-lock.json v2/v3 `packages` entry, as far as the closure needs it. */
interface LockedPackage {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  /** A workspace's symlink in node_modules: its contents are at `resolved`. */
  link?: boolean;
  resolved?: string;
}

export type LockedPackages = Record<string, LockedPackage>;

/** The packages a function keeps outside its bundle (package.json `baton.external`). */
export function externalsOf(functionDir: string): string[] {
  const manifest = JSON.parse(fs.readFileSync(path.join(functionDir, 'package.json'), 'utf8')) as {
    baton?: { external?: unknown };
  };
  const listed = manifest.baton?.external ?? [];
  if (!Array.isArray(listed) || listed.some((p) => typeof p !== 'string'))
    throw new Error(`${functionDir}/package.json: baton.external must be a list of package names`);
  return listed as string[];
}

/**
 * The lockfile key `name` resolves to from the package at `from` ('' for the project root, or a
 * workspace folder such as `functions/generate-pdf`): its own node_modules, then each enclosing one,
 * as node's resolution walks them.
 */
function resolveLocked(packages: LockedPackages, from: string, name: string): string | undefined {
  let base = from;
  for (;;) {
    const key = base ? `${base}/node_modules/${name}` : `node_modules/${name}`;
    if (packages[key]) return key;
    if (!base) return undefined;
    const enclosing = base.lastIndexOf('/node_modules/');
    base = enclosing < 0 ? '' : base.slice(0, enclosing);
  }
}

/**
 * Lockfile keys of `externals` as required from `workspace` and of everything they depend on
 * (dependencies, and the optional and peer dependencies that were installed). A required dependency
 * the lockfile lacks is an error: the image would fail at its first `require`.
 */
export function externalClosure(
  packages: LockedPackages,
  workspace: string,
  externals: readonly string[],
): Set<string> {
  const keep = new Set<string>();
  const visit = (from: string, name: string, required: boolean, wantedBy: string): void => {
    const key = resolveLocked(packages, from, name);
    if (!key) {
      if (required) throw new Error(`package-lock.json has no ${name} for ${wantedBy}: run npm install`);
      return;
    }
    if (keep.has(key)) return;
    keep.add(key);
    const locked = packages[key];
    const home = locked.link && locked.resolved ? locked.resolved : key;
    const contents = packages[home] ?? {};
    const optionalPeers = contents.peerDependenciesMeta ?? {};
    for (const dep of Object.keys(contents.dependencies ?? {})) visit(home, dep, true, key);
    for (const dep of Object.keys(contents.optionalDependencies ?? {})) visit(home, dep, false, key);
    for (const dep of Object.keys(contents.peerDependencies ?? {}))
      visit(home, dep, !optionalPeers[dep]?.optional, key);
  };
  for (const name of externals) visit(workspace, name, true, workspace || 'the project');
  return keep;
}

/** The nearest package-lock.json at or above `dir`. */
function findLockfile(dir: string): string {
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const candidate = path.join(at, 'package-lock.json');
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(at) === at) throw new Error(`no package-lock.json at or above ${dir}: run npm install`);
  }
}

export interface PruneResult {
  /** Lockfile keys kept (the externals' closure). */
  kept: string[];
  /** Package folders removed. */
  removed: number;
}

/**
 * Removes from the project's node_modules (beside its package-lock.json, which `npm ci --omit=dev`
 * filled) every package the function's externals do not need, with node_modules/.bin and npm's
 * hidden lockfile, which would describe what is gone. A function without externals keeps nothing.
 */
export function pruneToExternals(functionDir: string): PruneResult {
  const lockfile = findLockfile(functionDir);
  const root = path.dirname(lockfile);
  const { packages } = JSON.parse(fs.readFileSync(lockfile, 'utf8')) as { packages: LockedPackages };
  const workspace = path.relative(root, path.resolve(functionDir)).split(path.sep).join('/');
  const keep = externalClosure(packages, workspace, externalsOf(functionDir));
  const outside = [...keep].filter((key) => !key.startsWith('node_modules/'));
  // An image copies the project's node_modules only; npm puts a package under a workspace's own
  // node_modules when two versions clash, and the image would miss it.
  if (outside.length)
    throw new Error(`${outside.join(', ')}: not in ${root}/node_modules, which is all an image keeps`);
  const keptFolders = [...keep];
  let removed = 0;
  // Shortest first: a package's folder goes before the ones nested in it are looked at.
  const installed = Object.keys(packages)
    .filter((key) => key.startsWith('node_modules/') && !keep.has(key))
    .sort((a, b) => a.length - b.length);
  for (const key of installed) {
    // Never a folder that holds a kept package (npm nests a version under the package that needs it).
    if (keptFolders.some((kept) => kept.startsWith(`${key}/`))) continue;
    const folder = path.join(root, key);
    if (!fs.existsSync(folder) && !isSymlink(folder)) continue;
    fs.rmSync(folder, { recursive: true, force: true });
    removed += 1;
  }
  const modules = path.join(root, 'node_modules');
  fs.rmSync(path.join(modules, '.bin'), { recursive: true, force: true });
  fs.rmSync(path.join(modules, '.package-lock.json'), { force: true });
  // Scope folders left empty (@types, @opentelemetry…).
  if (fs.existsSync(modules)) {
    for (const entry of fs.readdirSync(modules)) {
      const folder = path.join(modules, entry);
      if (entry.startsWith('@') && fs.readdirSync(folder).length === 0) fs.rmdirSync(folder);
    }
  }
  return { kept: keptFolders.sort(), removed };
}

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
