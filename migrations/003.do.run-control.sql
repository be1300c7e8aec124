-- Run control: retry from the failed step, cancellation, workflow timeouts, concurrency limits.

-- A retried run keeps its old executions for the record; the planner ignores superseded ones.
ALTER TABLE step_executions ADD COLUMN superseded_at timestamptz;

-- Concurrency: at most `limit` running runs per (workflow, key); the rest wait, oldest first.
ALTER TABLE runs ADD COLUMN concurrency_key text;
CREATE INDEX runs_concurrency ON runs (workflow_name, concurrency_key, created_at)
  WHERE concurrency_key IS NOT NULL AND status IN ('pending', 'running', 'compensating');

-- Workflows that retry a run keep count of it.
ALTER TABLE runs ADD COLUMN retries integer NOT NULL DEFAULT 0;

-- Functions that have reported at least once: definitions naming others get a warning.
CREATE TABLE known_functions (
  name           text        PRIMARY KEY,
  first_seen_at  timestamptz NOT NULL DEFAULT now(),
  last_seen_at   timestamptz NOT NULL DEFAULT now()
);

-- Workflow timeout: the coordinator fails a run still active past this instant (a delayed
-- coordinator message fires on time; the reconciler catches any whose message was lost).
ALTER TABLE runs ADD COLUMN deadline_at timestamptz;
CREATE INDEX runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL AND status IN ('running', 'compensating');
