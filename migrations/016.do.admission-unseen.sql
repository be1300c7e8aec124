-- Admission's FIFO check (services/coordinator/src/run-store.ts, earlierUnseen): a pending run of the
-- workflow, arrived earlier, that admission has not looked at yet. Small: runs leave it when looked at.
CREATE INDEX runs_unseen ON runs (workflow_name, created_at, id) WHERE status = 'pending' AND concurrency_key IS NULL;
