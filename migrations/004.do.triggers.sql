-- Triggers: the runs an event started (a repeated idempotency key answers with them), and
-- schedules paused through the API (BullMQ job schedulers are derived from definitions + this).

ALTER TABLE events ADD COLUMN run_ids uuid[] NOT NULL DEFAULT '{}';
CREATE INDEX events_by_name ON events (name, created_at DESC);

CREATE TABLE schedule_states (
  -- `<workflow>:<trigger index>`, the BullMQ job scheduler id.
  id          text        PRIMARY KEY,
  paused      boolean     NOT NULL DEFAULT false,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Steps parked on `waitForEvent`, found by event name when an event arrives.
CREATE INDEX step_executions_waiting ON step_executions ((input->>'name'))
  WHERE function_name = 'baton.waitForEvent' AND status = 'running';
