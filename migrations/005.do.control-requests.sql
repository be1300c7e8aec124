-- Control requests are recorded in PostgreSQL before they are acknowledged (the outbox): a Redis
-- that loses the coordinator's message loses only the wake-up, and the reconciler re-drives what is
-- not done.

-- Cancel and retry requests (written by the gateway in the statement that checks the run), and the
-- event check of a waitForEvent step that begins (written with the step; its id is the step
-- execution's id). The coordinator applies a request under the run's lock and sets done_at in
-- that transaction.
CREATE TABLE control_requests (
  id          uuid        PRIMARY KEY,
  run_id      uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  type        text        NOT NULL CHECK (type IN ('run.cancel', 'run.retry', 'wait.check')),
  -- The message's other fields: {compensate} for a cancel, {attempt, input?, stepId?} for a retry.
  payload     jsonb       NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now(),
  done_at     timestamptz,
  -- Re-drives by the reconciler, and the last one's error.
  attempts    integer     NOT NULL DEFAULT 0,
  last_error  text
);

CREATE INDEX control_requests_pending ON control_requests (created_at) WHERE done_at IS NULL;
CREATE INDEX control_requests_by_run ON control_requests (run_id);

-- Events are their own outbox for waitForEvent delivery: NULL until the event has been offered to
-- the runs parked on its name. Events stored before this migration count as delivered.
ALTER TABLE events ADD COLUMN delivered_at timestamptz DEFAULT now();
ALTER TABLE events ALTER COLUMN delivered_at DROP DEFAULT;
CREATE INDEX events_undelivered ON events (created_at) WHERE delivered_at IS NULL;
