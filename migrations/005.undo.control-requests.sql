DROP INDEX events_undelivered;
ALTER TABLE events DROP COLUMN delivered_at;
DROP TABLE control_requests;
