-- Live health of deployed clients (issue 12 item 4), SQLite edition: the last
-- state the periodic URL checks recorded per client, with the whole result.
-- An observation, not a change of the client: no revision of its own.

CREATE TABLE client_health (
    client_id  BLOB PRIMARY KEY REFERENCES clients(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    checked_at TEXT NOT NULL,
    health     TEXT NOT NULL,
    CONSTRAINT valid_client_health_state CHECK (state IN ('HEALTHY', 'DEGRADED', 'DOWN', 'NOT_CHECKED'))
);
