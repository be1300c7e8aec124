-- Bulk operations (POST /v1/runs/bulk/retry|cancel) and fork (POST /v1/runs/:id/fork).

-- One row per bulk retry or cancel. The gateway writes it with its matched runs in one transaction;
-- the coordinator's bulk pass (bulk-operations.ts) claims a running one with FOR UPDATE SKIP LOCKED,
-- records the control requests of its next slice of runs and moves `cursor` in the same transaction,
-- so each run is handled once however many replicas run and however often they restart.
CREATE TABLE bulk_operations (
  id            uuid        PRIMARY KEY,
  kind          text        NOT NULL CHECK (kind IN ('retry', 'cancel')),
  status        text        NOT NULL DEFAULT 'running'
                            CHECK (status IN ('running', 'succeeded', 'cancelled', 'failed')),
  -- The filter as given ({workflow?, status?, tags?, createdAfter?, createdBefore?}): for display.
  filter        jsonb       NOT NULL,
  -- What each run's request carries: {input?} for a retry, {compensate} for a cancel.
  params        jsonb       NOT NULL DEFAULT '{}',
  rate_per_sec  integer     NOT NULL CHECK (rate_per_sec > 0),
  matched       integer     NOT NULL,
  -- Runs handled so far by outcome: a request recorded (done), no longer retryable/cancellable
  -- (skipped), or an error while recording (failed). done + skipped + failed = cursor.
  done          integer     NOT NULL DEFAULT 0,
  skipped       integer     NOT NULL DEFAULT 0,
  failed        integer     NOT NULL DEFAULT 0,
  -- The keyset position: runs with seq <= cursor have been handled.
  cursor        integer     NOT NULL DEFAULT 0,
  -- Why the operation itself failed (its passes kept failing).
  error         text,
  attempts      integer     NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  finished_at   timestamptz
);

CREATE INDEX bulk_operations_running ON bulk_operations (created_at) WHERE status = 'running';
CREATE INDEX bulk_operations_newest ON bulk_operations (created_at DESC, id DESC);
-- Ended operations are deleted (with their runs) BULK_KEEP_DAYS after they ended.
CREATE INDEX bulk_operations_ended ON bulk_operations (finished_at) WHERE status <> 'running';

-- The runs an operation matched, snapshotted when it was created (a run started later is never
-- swept in), in the order they are handled (oldest run first). No foreign key to runs: retention
-- may delete a run meanwhile, which is then skipped.
CREATE TABLE bulk_operation_runs (
  operation_id  uuid        NOT NULL REFERENCES bulk_operations (id) ON DELETE CASCADE,
  seq           integer     NOT NULL,
  run_id        uuid        NOT NULL,
  outcome       text        CHECK (outcome IN ('done', 'skipped', 'failed')),
  reason        text,
  -- The control request recorded for the run (done).
  request_id    uuid,
  -- clock_timestamp() of the statement that handled it: the pacing window counts these.
  processed_at  timestamptz,
  PRIMARY KEY (operation_id, seq)
);
-- The pacing window: requests an operation recorded in the last second.
CREATE INDEX bulk_operation_runs_done ON bulk_operation_runs (operation_id, processed_at) WHERE outcome = 'done';

-- Fork: the run a fork was made from, and each copied execution's source execution (a copied step
-- is never run, nor compensated, by the fork: its effect belongs to the run it was copied from).
ALTER TABLE runs ADD COLUMN forked_from uuid;
CREATE INDEX runs_forked_from ON runs (forked_from) WHERE forked_from IS NOT NULL;
ALTER TABLE step_executions ADD COLUMN copied_from uuid;
