import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import express, { Router, type RequestHandler, type Response } from 'express';
import type { Logger } from '@baton/engine';
import { ApiError } from '../http/errors';
import { ErrorCode } from '@baton/workflow';

/**
 * The web dashboard: static HTML, CSS and vanilla ES modules from services/gateway/public, no build
 * step. Every page is the same shell (public/index.html) naming the page module to load; the
 * modules read the JSON API (/v1/...) like any other client, with the API key the user typed when
 * the API answers 401.
 *
 * Caching: assets are served under `/assets/<build>/`, where `<build>` is a hash of their content,
 * so they can be cached for good (`immutable`); the pages themselves are `no-cache` (revalidated by
 * ETag), so a deploy shows at the next load. Asset URLs from an older build still answer, with the
 * current files and `no-cache`.
 */

/** services/gateway/public, from src/routes (ts-jest) and from dist/routes (the build) alike. */
export const PUBLIC_DIR = path.resolve(__dirname, '..', '..', 'public');

/**
 * Only our own files: no inline script or style, no other origin. `style-src 'self'` still lets
 * the modules set element.style (CSSOM), which the timeline bars use.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': DASHBOARD_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'same-origin',
  'Cross-Origin-Opener-Policy': 'same-origin',
};

const PAGES = {
  runs: 'Runs',
  run: 'Run',
  workflows: 'Workflows',
  functions: 'Functions',
} as const;
type Page = keyof typeof PAGES;

function listFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => {
      const full = path.join(dir, entry.name);
      return entry.isDirectory() ? listFiles(full) : entry.isFile() ? [full] : [];
    })
    .sort();
}

/**
 * The content hash of the assets. Memoised on the files' names, sizes and mtimes, so an edit shows
 * at the next page load without a restart (npm run dev) while a page load costs a few stats only.
 */
function assetBuild(assetsDir: string): () => string {
  let signature = '';
  let build = '';
  return () => {
    const files = listFiles(assetsDir);
    const stats = files.map((f) => {
      const s = fs.statSync(f);
      return `${f}:${s.size}:${s.mtimeMs}`;
    });
    const next = stats.join('\n');
    if (next !== signature) {
      const hash = crypto.createHash('sha256');
      for (const f of files) hash.update(path.relative(assetsDir, f)).update('\0').update(fs.readFileSync(f));
      build = hash.digest('hex').slice(0, 12);
      signature = next;
    }
    return build;
  };
}

const escapeHtml = (value: string): string =>
  value.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function dashboardRouter(logger: Logger, publicDir = PUBLIC_DIR): Router {
  const router = Router();
  const assetsDir = path.join(publicDir, 'assets');
  let shell: string;
  try {
    shell = fs.readFileSync(path.join(publicDir, 'index.html'), 'utf8');
  } catch (err) {
    // An image built without public/: the API still serves; the pages say what is missing.
    logger.warn({ err: (err as Error).message, publicDir }, 'dashboard files not found; the web dashboard is off');
    router.get(['/', '/runs/:id', '/workflows', '/functions'], () => {
      throw new ApiError(
        404,
        ErrorCode.DASHBOARD_NOT_INSTALLED,
        `the dashboard's files are not installed (${publicDir})`,
      );
    });
    return router;
  }
  const currentBuild = assetBuild(assetsDir);

  const sendPage = (res: Response, page: Page): void => {
    const assets = `/assets/${currentBuild()}`;
    const html = shell
      .replaceAll('%ASSETS%', assets)
      .replaceAll('%PAGE%', page)
      .replaceAll('%TITLE%', escapeHtml(PAGES[page]));
    // res.send adds an ETag and answers a matching If-None-Match with 304.
    res
      .set({ ...SECURITY_HEADERS, 'Cache-Control': 'no-cache' })
      .type('html')
      .send(html);
  };

  router.get('/', (_req, res) => sendPage(res, 'runs'));
  router.get('/runs/:id', (_req, res) => sendPage(res, 'run'));
  router.get('/workflows', (_req, res) => sendPage(res, 'workflows'));
  router.get('/functions', (_req, res) => sendPage(res, 'functions'));

  const staticOptions = { index: false, redirect: false, dotfiles: 'ignore', fallthrough: true } as const;
  const setSecurityHeaders = (res: Response) => res.set(SECURITY_HEADERS);
  const immutable = express.static(assetsDir, {
    ...staticOptions,
    immutable: true,
    maxAge: '365d',
    setHeaders: setSecurityHeaders,
  });
  const revalidated = express.static(assetsDir, {
    ...staticOptions,
    cacheControl: false,
    setHeaders: (res) => setSecurityHeaders(res).set('Cache-Control', 'no-cache'),
  });
  const assets: RequestHandler = (req, res, next) =>
    (req.params.build === currentBuild() ? immutable : revalidated)(req, res, next);
  router.use('/assets/:build', assets);

  return router;
}
