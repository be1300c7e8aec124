-- Run tags: string → string labels given at start or resolved from the definition's `tags:`
-- (shared/src/workflow/tags.ts). `GET /v1/runs?tag=k:v` filters with `tags @> '{"k":"v"}'`, which
-- this GIN index serves (jsonb_path_ops: containment only, smaller than the default operator class).
ALTER TABLE runs ADD COLUMN tags jsonb NOT NULL DEFAULT '{}';
CREATE INDEX runs_tags ON runs USING gin (tags jsonb_path_ops);
-- The planner picks between this index (then a sort of the matches) and walking runs_newest in
-- (created_at, id) order until a page is full, by how many runs it expects a tag to match, which it
-- estimates from a sample of whole `tags` values. At the default target (100), with tag sets that
-- repeat (customer × tier: 20 000 runs, 20 of them with the tag) a rare tag was estimated at 0.9% of
-- the runs, and the walk read all 20 000 to fill a page; at 1000 the estimate was right.
ALTER TABLE runs ALTER COLUMN tags SET STATISTICS 1000;
