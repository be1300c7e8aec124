-- Event retention: the coordinator's sweep deletes events delivered more than BATON_EVENT_RETENTION
-- ago (services/coordinator/src/retention.ts), oldest first; this index serves that range.
CREATE INDEX events_delivered ON events (delivered_at) WHERE delivered_at IS NOT NULL;
