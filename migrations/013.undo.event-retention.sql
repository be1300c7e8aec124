DROP INDEX events_delivered;
