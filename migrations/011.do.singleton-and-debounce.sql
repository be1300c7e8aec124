-- Singleton workflows (`singleton:` in a definition, shared/src/singleton.ts): a run started under a
-- singleton key holds it while active. The partial unique index is the guarantee: two starts with
-- one key, however concurrent (gateway replicas, events, schedules), never give two active runs —
-- the INSERT of the second inserts nothing (ON CONFLICT DO NOTHING) and the start returns the
-- holder, or (cancelRunning) releases the holder's key with its cancel request and inserts again.
ALTER TABLE runs ADD COLUMN singleton_key text;
CREATE UNIQUE INDEX runs_singleton ON runs (workflow_name, singleton_key)
  WHERE singleton_key IS NOT NULL AND status IN ('pending', 'running', 'compensating');

-- A finished run retried by hand (or in bulk) becomes active again: it gives its key up rather than
-- collide with the run that holds it now (the retry would otherwise fail on runs_singleton).
CREATE FUNCTION runs_singleton_release_on_retry() RETURNS trigger AS $$
BEGIN
  NEW.singleton_key := NULL;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER runs_singleton_retried BEFORE UPDATE OF status ON runs
  FOR EACH ROW
  WHEN (OLD.singleton_key IS NOT NULL
        AND OLD.status IN ('succeeded', 'failed', 'compensated', 'compensation_failed', 'cancelled')
        AND NEW.status IN ('pending', 'running', 'compensating'))
  EXECUTE FUNCTION runs_singleton_release_on_retry();

-- Debounced workflows (`debounce:`, shared/src/debounce.ts): one row per open window of a
-- (workflow, key), holding the latest trigger's input and how many triggers it collapsed. `run_id` is
-- the id the run gets when the window fires (answered to every trigger of the window). The window
-- fires at `fire_at` (last trigger + periodMs, at most first + maxWaitMs): the coordinator deletes
-- the row and inserts the run in one transaction, so a window starts one run whatever fires it (its
-- delayed message, a re-sent one, the reconciler's sweep of `debounces_due`, another replica).
CREATE TABLE debounces (
  workflow_name     text        NOT NULL,
  debounce_key      text        NOT NULL,
  run_id            uuid        NOT NULL UNIQUE,
  workflow_version  integer     NOT NULL,
  input             jsonb       NOT NULL,
  trigger           jsonb       NOT NULL,
  tags              jsonb       NOT NULL DEFAULT '{}',
  metadata          jsonb       NOT NULL DEFAULT '{}',
  count             integer     NOT NULL,
  first_at          timestamptz NOT NULL,
  last_at           timestamptz NOT NULL,
  fire_at           timestamptz NOT NULL,
  PRIMARY KEY (workflow_name, debounce_key),
  FOREIGN KEY (workflow_name, workflow_version) REFERENCES workflow_definitions (name, version)
);
CREATE INDEX debounces_due ON debounces (fire_at);
