-- Flow control (issue 18).
--
-- Function pause: the truth about which function queues are paused. BullMQ keeps the pause in the
-- queue's Redis meta hash, which a Redis wipe or a fresh Redis loses; the coordinator re-applies
-- these rows at start and on every reconcile pass (shared/src/function-controls.ts).
CREATE TABLE function_controls (
  name        text        PRIMARY KEY,
  paused      boolean     NOT NULL DEFAULT false,
  -- Why, as given to POST /v1/functions/:name/pause ({"reason": "..."}); NULL once resumed.
  reason      text,
  paused_at   timestamptz,
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Schedule overlap (`overlap: skip | cancelPrevious`): a tick looks for the active runs its schedule
-- started. Partial, so it holds only active scheduled runs.
CREATE INDEX runs_active_by_schedule ON runs (workflow_name, (trigger->>'scheduleId'))
  WHERE status IN ('pending', 'running', 'compensating') AND trigger->>'type' = 'schedule';
