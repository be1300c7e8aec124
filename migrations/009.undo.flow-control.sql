DROP INDEX runs_active_by_schedule;
DROP TABLE function_controls;
