DROP TABLE documents;
DROP TABLE events;
DROP TABLE run_logs;
DROP TABLE step_attempts;
DROP TABLE step_executions;
DROP TABLE runs;
DROP TABLE workflow_definitions;
