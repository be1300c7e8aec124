DROP INDEX runs_top_level;
DROP INDEX runs_by_parent_execution;
DROP INDEX runs_by_parent;
ALTER TABLE runs DROP COLUMN depth, DROP COLUMN parent_execution_id, DROP COLUMN parent_step_id,
  DROP COLUMN parent_run_id;
DROP TRIGGER step_items_counted ON step_executions;
DROP FUNCTION baton_count_item_change();
DROP FUNCTION baton_item_bucket(text, timestamptz);
DROP TABLE step_fanouts;
DROP INDEX step_executions_pending_items;
DROP INDEX step_executions_items;
DROP INDEX step_executions_steps_by_run;
DELETE FROM step_executions WHERE parent_execution_id IS NOT NULL OR status = 'pending';
ALTER TABLE step_executions DROP CONSTRAINT step_executions_status_check;
ALTER TABLE step_executions ADD CONSTRAINT step_executions_status_check
  CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'skipped', 'compensating',
                    'compensated', 'cancelled'));
ALTER TABLE step_executions DROP COLUMN undoes_execution_id, DROP COLUMN child_run_id, DROP COLUMN item_index, DROP COLUMN parent_execution_id;
