import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import type { Pool } from '../db/pool';
import {
  NotFoundError,
  ValidationError,
  isBuiltinFunction,
  parseWorkflowDefinition,
  type WorkflowDefinition,
  ErrorCode,
} from '@baton/workflow';

/**
 * Workflow definitions in PostgreSQL, versioned by the server: a new or changed definition gets the
 * next version, an identical one is a no-op. Runs are pinned to (name, version), so a stored
 * version never changes.
 */

export interface StoredDefinition {
  name: string;
  version: number;
  definition: WorkflowDefinition;
  createdAt: Date;
}

/** JSON with object keys sorted, so equal definitions hash equal whatever their key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export interface SavedDefinition {
  name: string;
  version: number;
  created: boolean;
  definition: WorkflowDefinition;
}

export async function saveDefinition(pool: Pool, raw: unknown): Promise<SavedDefinition> {
  const definition = parseWorkflowDefinition(raw);
  const hash = crypto.createHash('sha256').update(canonicalJson(definition)).digest('hex');
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // Serialises concurrent saves of one workflow so two PUTs cannot take the same version.
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`baton.workflow:${definition.name}`]);
    const latest = await client.query<{ version: number; spec_hash: string }>(
      'SELECT version, spec_hash FROM workflow_definitions WHERE name = $1 ORDER BY version DESC LIMIT 1',
      [definition.name],
    );
    if (latest.rows[0]?.spec_hash === hash) {
      await client.query('COMMIT');
      return { name: definition.name, version: latest.rows[0].version, created: false, definition };
    }
    const version = (latest.rows[0]?.version ?? 0) + 1;
    await client.query('INSERT INTO workflow_definitions (name, version, spec, spec_hash) VALUES ($1, $2, $3, $4)', [
      definition.name,
      version,
      JSON.stringify(definition),
      hash,
    ]);
    await client.query('COMMIT');
    return { name: definition.name, version, created: true, definition };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

interface DefinitionRow {
  name: string;
  version: number;
  spec: WorkflowDefinition;
  created_at: Date;
}

const toStored = (row: DefinitionRow): StoredDefinition => ({
  name: row.name,
  version: row.version,
  definition: row.spec,
  createdAt: row.created_at,
});

/** A version, or the latest when `version` is omitted. Throws NotFoundError. */
export async function getDefinition(
  pool: Pick<Pool, 'query'>,
  name: string,
  version?: number,
): Promise<StoredDefinition> {
  const { rows } =
    version === undefined
      ? await pool.query<DefinitionRow>(
          'SELECT * FROM workflow_definitions WHERE name = $1 ORDER BY version DESC LIMIT 1',
          [name],
        )
      : await pool.query<DefinitionRow>('SELECT * FROM workflow_definitions WHERE name = $1 AND version = $2', [
          name,
          version,
        ]);
  if (!rows[0]) throw new NotFoundError('workflow', version === undefined ? name : `${name}@${version}`);
  return toStored(rows[0]);
}

/** The latest version of every workflow, by name. */
export async function listLatestDefinitions(pool: Pick<Pool, 'query'>): Promise<StoredDefinition[]> {
  const { rows } = await pool.query<DefinitionRow>(
    'SELECT DISTINCT ON (name) * FROM workflow_definitions ORDER BY name, version DESC',
  );
  return rows.map(toStored);
}

export async function listVersions(pool: Pool, name: string): Promise<{ version: number; createdAt: Date }[]> {
  const { rows } = await pool.query<{ version: number; created_at: Date }>(
    'SELECT version, created_at FROM workflow_definitions WHERE name = $1 ORDER BY version DESC',
    [name],
  );
  return rows.map((r) => ({ version: r.version, createdAt: r.created_at }));
}

export interface KnownFunction {
  name: string;
  /** When a worker of it last reported; null for a function only definitions name so far. */
  lastSeenAt: Date | null;
}

/**
 * Every step function Baton knows of, by name — the one list behind the queue metrics, Bull Board and
 * GET /v1/functions: the ones a worker has reported (`known_functions`) and the ones any stored
 * definition version names (a run pinned to an older version still enqueues on its functions),
 * compensations included, whether or not a worker runs yet. Built-in steps never reach a queue.
 */
export async function knownFunctions(pool: Pick<Pool, 'query'>): Promise<KnownFunction[]> {
  const { rows } = await pool.query<{ name: string; last_seen_at: Date | null }>(
    `SELECT n.name, k.last_seen_at FROM (
       SELECT name FROM known_functions
       UNION
       SELECT step->>'function' FROM workflow_definitions, jsonb_array_elements(spec->'steps') AS step
        WHERE step->>'function' IS NOT NULL
       UNION
       SELECT step->'compensate'->>'function' FROM workflow_definitions, jsonb_array_elements(spec->'steps') AS step
        WHERE step->'compensate'->>'function' IS NOT NULL
     ) n LEFT JOIN known_functions k ON k.name = n.name`,
  );
  return rows
    .filter((r) => !isBuiltinFunction(r.name))
    .map((r) => ({ name: r.name, lastSeenAt: r.last_seen_at }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Functions the definition names that no worker has ever reported, and child workflows it names
 * that have no definition: warnings, not errors, since functions and definitions deploy
 * independently of each other.
 */
export async function unknownFunctionWarnings(
  pool: Pool,
  definition: WorkflowDefinition,
): Promise<{ path: string; message: string }[]> {
  const named = definition.steps.flatMap((step, i) => [
    // Built-in kinds (sleep, waitForEvent) are the coordinator's own.
    ...(isBuiltinFunction(step.function) ? [] : [{ path: `steps[${i}].function`, name: step.function }]),
    ...(step.compensate ? [{ path: `steps[${i}].compensate.function`, name: step.compensate.function }] : []),
  ]);
  const { rows } = await pool.query<{ name: string }>('SELECT name FROM known_functions WHERE name = ANY($1)', [
    named.map((n) => n.name),
  ]);
  const known = new Set(rows.map((r) => r.name));
  const warnings = named
    .filter((n) => !known.has(n.name))
    .map((n) => ({ path: n.path, message: `no worker of function '${n.name}' has reported yet` }));
  // `workflow:` steps naming a workflow not defined (yet): the run would fail with WORKFLOW_NOT_FOUND.
  const children = definition.steps.flatMap((step, i) =>
    step.workflow !== undefined && step.workflow !== definition.name
      ? [{ path: `steps[${i}].workflow`, name: step.workflow }]
      : [],
  );
  if (children.length) {
    const defined = await pool.query<{ name: string }>(
      'SELECT DISTINCT name FROM workflow_definitions WHERE name = ANY($1)',
      [children.map((c) => c.name)],
    );
    const names = new Set(defined.rows.map((r) => r.name));
    for (const c of children.filter((c) => !names.has(c.name))) {
      warnings.push({ path: c.path, message: `no workflow named '${c.name}' is defined yet` });
    }
  }
  return warnings;
}

/** Parses a YAML or JSON document (JSON is YAML). */
export function parseDefinitionText(text: string, source = 'definition'): unknown {
  try {
    return YAML.parse(text, { maxAliasCount: 100 });
  } catch (err) {
    throw new ValidationError(
      `${source} is not valid YAML/JSON: ${(err as Error).message}`,
      undefined,
      ErrorCode.INVALID_DEFINITION,
    );
  }
}

/** Saves every *.yaml, *.yml and *.json file of `dir`. */
export async function loadDefinitionsFromDir(
  pool: Pool,
  dir: string,
): Promise<{ file: string; name: string; version: number; created: boolean }[]> {
  const files = (await fs.readdir(dir)).filter((f) => /\.(ya?ml|json)$/.test(f)).sort();
  const saved: { file: string; name: string; version: number; created: boolean }[] = [];
  for (const file of files) {
    const raw = parseDefinitionText(await fs.readFile(path.join(dir, file), 'utf8'), file);
    try {
      const { name, version, created } = await saveDefinition(pool, raw);
      saved.push({ file, name, version, created });
    } catch (err) {
      if (err instanceof ValidationError) {
        const details = (err.details as { path: string; message: string }[] | undefined) ?? [];
        throw new ValidationError(
          `${file}: ${err.message}: ${details.map((d) => `${d.path}: ${d.message}`).join('; ')}`,
          details,
          err.code,
        );
      }
      throw err;
    }
  }
  return saved;
}
