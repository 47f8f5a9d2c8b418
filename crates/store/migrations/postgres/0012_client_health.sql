-- Live health of deployed clients (issue 12 item 4), PostgreSQL edition: the
-- last state the periodic URL checks recorded per client, with the whole
-- result. An observation, not a change of the client: no revision of its own.

CREATE TABLE client_health (
    client_id  UUID PRIMARY KEY REFERENCES clients(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    checked_at TIMESTAMPTZ NOT NULL,
    health     JSONB NOT NULL,
    CONSTRAINT valid_client_health_state CHECK (state IN ('HEALTHY', 'DEGRADED', 'DOWN', 'NOT_CHECKED'))
);
