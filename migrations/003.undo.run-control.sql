DROP INDEX runs_deadline;
ALTER TABLE runs DROP COLUMN deadline_at;
DROP TABLE known_functions;
ALTER TABLE runs DROP COLUMN retries;
DROP INDEX runs_concurrency;
ALTER TABLE runs DROP COLUMN concurrency_key;
ALTER TABLE step_executions DROP COLUMN superseded_at;
