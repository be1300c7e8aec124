-- Event retention: the coordinator's sweep deletes delivered events older than BATON_EVENT_RETENTION
-- (services/coordinator/src/retention.ts), oldest first; this index serves that range.
CREATE INDEX events_delivered ON events (created_at) WHERE delivered_at IS NOT NULL;
