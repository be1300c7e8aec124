import express, { Router } from 'express';
import { ErrorCode, ValidationError } from '@baton/workflow';
import {
  getDefinition,
  listLatestDefinitions,
  listVersions,
  parseDefinitionText,
  pausedWorkflows,
  setWorkflowPaused,
  saveDefinition,
  syncSchedules,
  unknownFunctionWarnings,
  type StoredDefinition,
} from '@baton/engine';
import { getWorkflowQuery, YAML_TYPES } from '../api/schemas';
import type { AppDeps } from '../deps';
import { checkBodyShape, jsonBody, parseOrThrow } from '../http/validation';

const summary = (d: StoredDefinition, pausedAt: Date | undefined) => ({
  name: d.name,
  version: d.version,
  description: d.definition.description ?? null,
  createdAt: d.createdAt.toISOString(),
  steps: d.definition.steps.map((s) => ({ id: s.id, function: s.function, needs: s.needs })),
  ...pauseState(pausedAt),
});

const pauseState = (pausedAt: Date | null | undefined) => ({
  paused: Boolean(pausedAt),
  pausedAt: pausedAt ? pausedAt.toISOString() : null,
});

export function workflowsRouter(deps: AppDeps): Router {
  const { pool } = deps;
  const router = Router();
  const json = express.json({ limit: deps.config.bodyLimit });
  const yaml = express.text({ type: YAML_TYPES, limit: deps.config.bodyLimit });

  router.get('/v1/workflows', async (_req, res) => {
    const [definitions, paused] = await Promise.all([listLatestDefinitions(pool), pausedWorkflows(pool)]);
    res.json({ workflows: definitions.map((d) => summary(d, paused.get(d.name))) });
  });

  router.get('/v1/workflows/:name', async (req, res) => {
    const q = parseOrThrow(getWorkflowQuery, req.query, { code: ErrorCode.INVALID_QUERY, what: 'query' });
    const [definition, versions, paused] = await Promise.all([
      getDefinition(pool, req.params.name, q.version),
      listVersions(pool, req.params.name),
      pausedWorkflows(pool),
    ]);
    res.json({
      name: definition.name,
      version: definition.version,
      createdAt: definition.createdAt.toISOString(),
      definition: definition.definition,
      versions: versions.map((v) => ({ version: v.version, createdAt: v.createdAt.toISOString() })),
      ...pauseState(paused.get(definition.name)),
    });
  });

  // Pause: new runs are accepted and stay pending; resume admits them in order (the coordinator,
  // woken by `workflow.resume`; its reconciler if that message is lost). Stored in PostgreSQL first.
  for (const action of ['pause', 'resume'] as const) {
    router.post(`/v1/workflows/:name/${action}`, async (req, res) => {
      const name = req.params.name;
      const state = await setWorkflowPaused(pool, name, action === 'pause');
      if (action === 'resume' && state.changed) {
        await deps.coordinator
          .send({ type: 'workflow.resume', workflow: name, at: Date.now() })
          .catch((err: unknown) =>
            res.locals.log.warn({ err, workflow: name }, 'resume wake-up deferred to the reconciler'),
          );
      }
      if (state.changed) res.locals.log.info({ workflow: name, paused: state.paused }, `workflow ${action}d`);
      res.json({ name, ...pauseState(state.pausedAt) });
    });
  }

  router.put('/v1/workflows/:name', json, yaml, async (req, res) => {
    const name = req.params.name;
    let raw: unknown;
    if (typeof req.body === 'string') {
      raw = parseDefinitionText(req.body, 'request body');
      checkBodyShape(raw);
    } else {
      raw = jsonBody(req);
    }
    const bodyName = (raw as { name?: unknown } | null)?.name;
    // The name may be left to the URL.
    if (raw && typeof raw === 'object' && !Array.isArray(raw) && bodyName === undefined) raw = { ...raw, name };
    // The URL names the resource: a body for another workflow is refused, never saved elsewhere.
    if (raw && typeof raw === 'object' && bodyName !== undefined && bodyName !== name) {
      throw new ValidationError(
        `definition name ${JSON.stringify(bodyName).slice(0, 100)} does not match the URL's '${name}'`,
        [{ path: 'name', message: `must equal '${name}', the workflow name in the URL` }],
        ErrorCode.INVALID_DEFINITION,
      );
    }
    const saved = await saveDefinition(pool, raw);
    if (saved.created) {
      res.locals.log.info({ workflow: saved.name, version: saved.version }, 'workflow definition saved');
      res.location(`/v1/workflows/${saved.name}`);
    }
    const warnings = await unknownFunctionWarnings(pool, saved.definition);
    // Schedules follow the new version at once (the coordinator's reconciler would, within a pass).
    if (saved.created) await syncSchedules(pool, deps.coordinator);
    res.status(saved.created ? 201 : 200).json({ name: saved.name, version: saved.version, warnings });
  });

  return router;
}
