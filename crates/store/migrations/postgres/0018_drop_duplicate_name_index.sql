-- `name` is UNIQUE, so PostgreSQL already keeps a b-tree on it
-- (`clusters_name_key`); `idx_clusters_name` (0001) was a second copy of that
-- index, one more entry written by every registration and by every update that
-- moves a row. Equality and order by name use the unique index; partial-name
-- search without pg_trgm scans it instead.
DROP INDEX IF EXISTS idx_clusters_name;
