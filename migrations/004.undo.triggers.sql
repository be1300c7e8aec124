DROP INDEX step_executions_waiting;
DROP TABLE schedule_states;
DROP INDEX events_by_name;
ALTER TABLE events DROP COLUMN run_ids;
