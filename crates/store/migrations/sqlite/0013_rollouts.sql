-- Canary-first rollouts (seed client-registry.md), SQLite edition: the plan
-- and every client's state are one JSON document, changed only by the writer.
CREATE TABLE rollouts (
    id         BLOB PRIMARY KEY,
    app        TEXT NOT NULL,
    version    TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    document   TEXT NOT NULL
);
CREATE INDEX idx_rollouts_status ON rollouts(status, created_at);
CREATE INDEX idx_rollouts_created ON rollouts(created_at);
