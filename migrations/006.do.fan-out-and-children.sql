-- Beyond the static DAG: forEach fan-out, repeat-until and child workflows (docs/WORKFLOWS.md).
--
-- A forEach or repeat step keeps its own execution (the one the planner sees, with the step's
-- status and, once done, its output) and gains item executions under it: one per list item, or one
-- per iteration. Items are ordinary executions — their own jobs, attempts, retries, timeouts, logs —
-- that the planner never loads: it reads the step's counts in step_fanouts instead, so a report of
-- one item of 10 000 costs the same as a report of a plain step.

ALTER TABLE step_executions
  -- The forEach/repeat step execution an item belongs to (NULL for a step's own execution).
  ADD COLUMN parent_execution_id uuid,
  -- The item's position in the list (forEach), or the iteration number from 0 (repeat).
  ADD COLUMN item_index integer,
  -- A `workflow:` step (or item): the child run it started.
  ADD COLUMN child_run_id uuid,
  -- A compensation item: the forEach item whose effect it undoes.
  ADD COLUMN undoes_execution_id uuid;

-- `pending`: an item created but not yet dispatched (waiting for a slot under forEach `concurrency`).
ALTER TABLE step_executions DROP CONSTRAINT step_executions_status_check;
ALTER TABLE step_executions ADD CONSTRAINT step_executions_status_check
  CHECK (status IN ('pending', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'skipped',
                    'compensating', 'compensated', 'cancelled'));

-- The items of a step in list order (output assembly, the items API, retries).
CREATE INDEX step_executions_items ON step_executions (parent_execution_id, item_index)
  WHERE parent_execution_id IS NOT NULL;
-- What the planner loads: a run's steps without their items (10 000 items cost nothing to load).
CREATE INDEX step_executions_steps_by_run ON step_executions (run_id, created_at)
  WHERE parent_execution_id IS NULL;
-- The next items to dispatch under a concurrency cap.
CREATE INDEX step_executions_pending_items ON step_executions (parent_execution_id, item_index)
  WHERE status = 'pending';

-- One row per forEach/repeat step execution: how many of its items are in each state. The inserting
-- code sets the counts of the items it creates (fanout-store.ts); every later change of an item's
-- status is counted by the trigger below, so no code path can forget one.
CREATE TABLE step_fanouts (
  -- Deferred: the step's own execution is written at commit, after its items and counts.
  execution_id  uuid    PRIMARY KEY REFERENCES step_executions (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  run_id        uuid    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  mode          text    NOT NULL CHECK (mode IN ('forEach', 'repeat')),
  -- Items created (the list's length; for repeat, the iterations begun).
  total         integer NOT NULL DEFAULT 0,
  pending       integer NOT NULL DEFAULT 0,
  succeeded     integer NOT NULL DEFAULT 0,
  failed        integer NOT NULL DEFAULT 0,
  cancelled     integer NOT NULL DEFAULT 0,
  -- Succeeded items whose effect is being, or was, undone by compensation.
  undone        integer NOT NULL DEFAULT 0,
  -- forEach `concurrency`: at most this many items in flight (NULL: no cap of its own).
  concurrency   integer
);

-- The count an item's state falls in (NULL: in flight, or superseded by a retry).
CREATE FUNCTION baton_item_bucket(status text, superseded_at timestamptz) RETURNS text
  LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN superseded_at IS NOT NULL THEN NULL
              WHEN status = 'pending' THEN 'pending'
              WHEN status = 'succeeded' THEN 'succeeded'
              WHEN status IN ('compensating', 'compensated') THEN 'undone'
              WHEN status = 'failed' THEN 'failed'
              WHEN status = 'cancelled' THEN 'cancelled'
         END
$$;

CREATE FUNCTION baton_count_item_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  was text := baton_item_bucket(OLD.status, OLD.superseded_at);
  now_in text := baton_item_bucket(NEW.status, NEW.superseded_at);
BEGIN
  IF was IS DISTINCT FROM now_in THEN
    UPDATE step_fanouts SET
      pending   = pending   + (now_in IS NOT DISTINCT FROM 'pending')::int   - (was IS NOT DISTINCT FROM 'pending')::int,
      succeeded = succeeded + (now_in IS NOT DISTINCT FROM 'succeeded')::int - (was IS NOT DISTINCT FROM 'succeeded')::int,
      undone    = undone    + (now_in IS NOT DISTINCT FROM 'undone')::int    - (was IS NOT DISTINCT FROM 'undone')::int,
      failed    = failed    + (now_in IS NOT DISTINCT FROM 'failed')::int    - (was IS NOT DISTINCT FROM 'failed')::int,
      cancelled = cancelled + (now_in IS NOT DISTINCT FROM 'cancelled')::int - (was IS NOT DISTINCT FROM 'cancelled')::int,
      -- A superseded item leaves the step; its replacement is counted when it is inserted.
      total     = total - (NEW.superseded_at IS NOT NULL AND OLD.superseded_at IS NULL)::int
     WHERE execution_id = NEW.parent_execution_id;
  END IF;
  RETURN NULL;
END
$$;

-- Only item rows fire it: the WHEN clause is checked without calling the function, so plain steps
-- pay nothing.
CREATE TRIGGER step_items_counted
  AFTER UPDATE OF status, superseded_at ON step_executions
  FOR EACH ROW WHEN (NEW.parent_execution_id IS NOT NULL)
  EXECUTE FUNCTION baton_count_item_change();

-- Child runs: a `workflow:` step's run points back at the step that awaits it.
ALTER TABLE runs
  ADD COLUMN parent_run_id uuid,
  ADD COLUMN parent_step_id text,
  -- The step (or item) execution the child reports to when it ends.
  ADD COLUMN parent_execution_id uuid,
  -- 0 for a top-level run; a child is its parent's depth + 1 (BATON_MAX_CHILD_DEPTH).
  ADD COLUMN depth integer NOT NULL DEFAULT 0;

CREATE INDEX runs_by_parent ON runs (parent_run_id, created_at DESC, id DESC) WHERE parent_run_id IS NOT NULL;
-- One child per awaiting execution: a coordinator killed and re-run can never start a second one.
CREATE UNIQUE INDEX runs_by_parent_execution ON runs (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
-- The runs list's "top-level only" filter.
CREATE INDEX runs_top_level ON runs (created_at DESC, id DESC) WHERE parent_run_id IS NULL;
