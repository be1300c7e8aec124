DROP TABLE workflow_pauses;
DROP INDEX runs_held_by_rate;
DROP INDEX runs_held;
DROP INDEX runs_rate_starts;
ALTER TABLE runs DROP COLUMN rate_key;
ALTER TABLE runs DROP COLUMN priority;
