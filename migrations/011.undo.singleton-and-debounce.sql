DROP TABLE debounces;
DROP TRIGGER runs_singleton_retried ON runs;
DROP FUNCTION runs_singleton_release_on_retry();
DROP INDEX runs_singleton;
ALTER TABLE runs DROP COLUMN singleton_key;
