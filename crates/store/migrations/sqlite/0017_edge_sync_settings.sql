-- The sync controller's settings that change at run time, shared by every
-- replica (issue 13): one row holding the reconciliation interval
-- `fleetreg sync reconcile --every` set (NULL: the configuration file's
-- `edge.reconcile_seconds`) and when every node was last sent its full
-- configuration (before the first reconciliation: when the first controller
-- started the schedule; NULL before that). The controller reads it, so the
-- value and the schedule survive restarts and follow the lease.
CREATE TABLE edge_sync_settings (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    reconcile_seconds INTEGER CHECK (reconcile_seconds > 0),
    reconciled_at     TEXT
);
INSERT INTO edge_sync_settings (id, reconcile_seconds, reconciled_at) VALUES (1, NULL, NULL);

-- The controller's tick reads the nodes it may have to push to again: not
-- running their desired revision and not failed. Usually none, so this
-- partial index is small and the read does not scan every node. (The
-- predicate is the query's, word for word: SQLite's null-safe `IS NOT`.)
CREATE INDEX idx_edge_node_sync_pending ON edge_node_sync(node_id)
    WHERE applied_revision IS NOT desired_revision AND status <> 'failed';
