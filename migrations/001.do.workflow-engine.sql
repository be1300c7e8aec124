-- Workflow engine state. PostgreSQL is the source of truth; Redis only holds the work list,
-- which the coordinator's reconciler can rebuild from these tables at any time.

CREATE TABLE workflow_definitions (
  name        text        NOT NULL,
  version     integer     NOT NULL CHECK (version > 0),
  spec        jsonb       NOT NULL,
  -- sha256 of the canonical spec: an identical PUT is a no-op instead of a new version.
  spec_hash   text        NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);

CREATE TABLE runs (
  id                uuid        PRIMARY KEY,
  workflow_name     text        NOT NULL,
  workflow_version  integer     NOT NULL,
  status            text        NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed',
                                  'compensating', 'compensated', 'compensation_failed', 'cancelled')),
  input             jsonb       NOT NULL,
  output            jsonb,
  error             jsonb,
  trigger           jsonb       NOT NULL,
  idempotency_key   text,
  metadata          jsonb       NOT NULL DEFAULT '{}',
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  -- A run is pinned to the definition version it started on.
  FOREIGN KEY (workflow_name, workflow_version) REFERENCES workflow_definitions (name, version)
);

-- One run per idempotency key and workflow: the gateway's INSERT ... ON CONFLICT relies on it.
CREATE UNIQUE INDEX runs_idempotency_key ON runs (workflow_name, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
-- Listing is newest first with a (created_at, id) keyset cursor.
CREATE INDEX runs_newest ON runs (created_at DESC, id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow_name, created_at DESC, id DESC);
-- The reconciler scans only the runs that are not finished.
CREATE INDEX runs_active ON runs (updated_at) WHERE status IN ('pending', 'running', 'compensating');

-- One row per execution of a step (an action or a compensation). A retried run adds new rows and
-- keeps the old ones, so the history of earlier executions stays visible.
CREATE TABLE step_executions (
  id             uuid        PRIMARY KEY,
  run_id         uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_id        text        NOT NULL,
  kind           text        NOT NULL CHECK (kind IN ('action', 'compensation')),
  function_name  text        NOT NULL,
  status         text        NOT NULL CHECK (status IN ('queued', 'running', 'retrying', 'succeeded',
                               'failed', 'skipped', 'compensating', 'compensated', 'cancelled')),
  input          jsonb,
  output         jsonb,
  error          jsonb,
  attempt        integer     NOT NULL DEFAULT 0,
  max_attempts   integer     NOT NULL,
  -- Policy the function runtime applies between attempts (BullMQ attempts/backoff).
  retry_policy   jsonb       NOT NULL,
  timeout_ms     integer,
  worker_id      text,
  metadata       jsonb       NOT NULL DEFAULT '{}',
  created_at     timestamptz NOT NULL DEFAULT now(),
  queued_at      timestamptz,
  started_at     timestamptz,
  finished_at    timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX step_executions_by_run ON step_executions (run_id, created_at);
-- The reconciler looks for work the DB says is outstanding.
CREATE INDEX step_executions_outstanding ON step_executions (updated_at)
  WHERE status IN ('queued', 'running', 'retrying');

-- Every attempt of every step execution, as reported by the function runtime.
CREATE TABLE step_attempts (
  step_execution_id  uuid        NOT NULL REFERENCES step_executions (id) ON DELETE CASCADE,
  attempt            integer     NOT NULL,
  status             text        NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
  worker_id          text,
  error              jsonb,
  started_at         timestamptz,
  finished_at        timestamptz,
  PRIMARY KEY (step_execution_id, attempt)
);

CREATE TABLE run_logs (
  id                 bigserial   PRIMARY KEY,
  run_id             uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  step_execution_id  uuid,
  step_id            text,
  level              text        NOT NULL,
  message            text        NOT NULL,
  data               jsonb,
  time               timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX run_logs_by_run ON run_logs (run_id, id);

-- Internal and external events (POST /v1/events/:name, ctx.emit).
CREATE TABLE events (
  id               uuid        PRIMARY KEY,
  name             text        NOT NULL,
  payload          jsonb       NOT NULL,
  idempotency_key  text,
  source           jsonb       NOT NULL DEFAULT '{}',
  created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX events_idempotency_key ON events (name, idempotency_key)
  WHERE idempotency_key IS NOT NULL;

-- Large step results (the invoice PDF). Step outputs carry only the document id.
CREATE TABLE documents (
  id               uuid        PRIMARY KEY,
  run_id           uuid,
  -- runId:stepId of the producing step: a retried attempt finds its earlier document.
  idempotency_key  text        UNIQUE,
  filename         text        NOT NULL,
  content_type     text        NOT NULL,
  size_bytes       integer     NOT NULL,
  content          bytea       NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now()
);
