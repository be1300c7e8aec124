import { Router } from 'express';
import { NotFoundError } from '@baton/workflow';
import type { AppDeps } from '../deps';
import { parseUuid } from '../http/validation';
import { getDocument } from '../read-model';

/**
 * `inline` so browsers show the PDF; the plain `filename` is an ASCII fallback and `filename*`
 * (RFC 6266/5987) carries the real name.
 */
export function inlineDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `inline; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename)}`;
}

export function documentsRouter(deps: AppDeps): Router {
  const router = Router();

  router.get('/v1/documents/:id', async (req, res) => {
    const id = parseUuid(req.params.id, 'document id');
    const doc = await getDocument(deps.pool, id);
    if (!doc) throw new NotFoundError('document', id);
    res
      .status(200)
      .set({
        'Content-Type': doc.content_type,
        'Content-Disposition': inlineDisposition(doc.filename),
        // A stored document never changes, but it is private to whoever may call the API.
        'Cache-Control': 'private, max-age=3600',
        'X-Content-Type-Options': 'nosniff',
      })
      .end(doc.content);
  });

  return router;
}
