-- Run tags: string → string labels given at start or resolved from the definition's `tags:`
-- (shared/src/workflow/tags.ts). `GET /v1/runs?tag=k:v` filters with `tags @> '{"k":"v"}'`, which
-- this GIN index serves (jsonb_path_ops: containment only, smaller than the default operator class).
ALTER TABLE runs ADD COLUMN tags jsonb NOT NULL DEFAULT '{}';
CREATE INDEX runs_tags ON runs USING gin (tags jsonb_path_ops);
