import { Router } from 'express';
import { buildOpenApiDocument } from '../api/openapi';
import type { AppDeps } from '../deps';

/** `GET /openapi.json`: the API description, built once per app from the zod schemas. */
export function openapiRouter(deps: AppDeps): Router {
  const router = Router();
  let document: Record<string, unknown> | undefined;

  router.get('/openapi.json', (_req, res) => {
    const readOnlyKeys = (deps.config.readOnlyApiKeys?.length ?? 0) > 0;
    document ??= buildOpenApiDocument({ auth: deps.config.apiKeys.length > 0 || readOnlyKeys, readOnlyKeys });
    res.json(document);
  });

  return router;
}
