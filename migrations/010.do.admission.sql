-- Admission of runs: workflow rate limits, run priority, workflow pause (docs/WORKFLOWS.md).

-- A run's priority, 1 (highest) … 10, resolved from the definition's `priority` when the run is
-- admitted (5 without one): its step jobs' BullMQ priority, and the order held runs are admitted in.
ALTER TABLE runs ADD COLUMN priority smallint NOT NULL DEFAULT 5;

-- A run of a workflow with a `rateLimit`: the bucket it counts in (its `rateLimit.key` over
-- `{input}`, '' by default), set when admission first looks at it. Its start is `started_at`.
ALTER TABLE runs ADD COLUMN rate_key text;

-- Starts of a bucket within the last period, counted under the bucket's advisory lock.
CREATE INDEX runs_rate_starts ON runs (workflow_name, rate_key, started_at) WHERE rate_key IS NOT NULL;

-- Held runs (pending, admission done: concurrency_key set), in the order they are admitted: higher
-- priority first, first come first served within one. Replaces runs_concurrency's order for them.
CREATE INDEX runs_held ON runs (workflow_name, concurrency_key, priority, created_at, id)
  WHERE status = 'pending' AND concurrency_key IS NOT NULL;
CREATE INDEX runs_held_by_rate ON runs (workflow_name, rate_key, priority, created_at, id)
  WHERE status = 'pending' AND rate_key IS NOT NULL;

-- Paused workflows: new runs are accepted and stay pending until resumed. A row while paused.
CREATE TABLE workflow_pauses (
  workflow_name text        PRIMARY KEY,
  paused_at     timestamptz NOT NULL DEFAULT now()
);
