-- Retention: the coordinator's sweep deletes finished runs past their retention, with everything
-- they own (services/coordinator/src/retention.ts). Each index serves one of its statements.

-- The runs of a (workflow, status) past a point in time: one range per retention rule, oldest first.
CREATE INDEX runs_finished ON runs (workflow_name, status, finished_at) WHERE finished_at IS NOT NULL;
-- A deleted run's documents (documents.run_id has no foreign key).
CREATE INDEX documents_by_run ON documents (run_id) WHERE run_id IS NOT NULL;
-- The cascade from runs to step_fanouts (its run_id had no index: each deleted run scanned the table).
CREATE INDEX step_fanouts_by_run ON step_fanouts (run_id);
-- Control requests done long ago (the sweep purges them after a day).
CREATE INDEX control_requests_done ON control_requests (done_at) WHERE done_at IS NOT NULL;
