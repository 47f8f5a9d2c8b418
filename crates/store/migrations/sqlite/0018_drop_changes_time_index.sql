-- Retention prunes the change log as a prefix, read in revision order
-- (`Store::prune_events`): the index on the time is no longer read, and every
-- event wrote an entry to it.
DROP INDEX IF EXISTS idx_changes_occurred_at;
