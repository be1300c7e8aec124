ALTER TABLE step_executions DROP COLUMN copied_from;
DROP INDEX runs_forked_from;
ALTER TABLE runs DROP COLUMN forked_from;
DROP TABLE bulk_operation_runs;
DROP TABLE bulk_operations;
