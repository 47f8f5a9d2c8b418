-- Client registry (seed client-registry.md), PostgreSQL edition. Every filter
-- is a real column with an index ending in name (lists come out sorted
-- without a sort step); apps are mirrored into client_apps so the app filter
-- uses an index on both engines.

CREATE TABLE clients (
    id                   UUID PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    status               TEXT NOT NULL,
    role                 TEXT NOT NULL,
    deployed_date        DATE,
    destroyed_date       DATE,
    server_type          TEXT,
    server_location      TEXT,
    server_ip            TEXT,
    server_id            TEXT,
    apps                 JSONB NOT NULL DEFAULT '[]',
    versions             JSONB NOT NULL DEFAULT '{}',
    urls                 JSONB NOT NULL DEFAULT '{}',
    last_full_update     DATE,
    last_security_patch  DATE,
    last_os_update       DATE,
    last_backup_verified DATE,
    notes                TEXT NOT NULL DEFAULT '',
    revision             BIGINT NOT NULL,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    CONSTRAINT valid_client_name CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    CONSTRAINT valid_client_status CHECK (status IN ('pending', 'deployed', 'maintenance', 'offboarding', 'destroyed')),
    CONSTRAINT valid_client_role CHECK (role IN ('canary', 'production'))
);

CREATE INDEX idx_clients_status_role ON clients(status, role, name);
CREATE INDEX idx_clients_role ON clients(role, name);
CREATE INDEX idx_clients_location ON clients(server_location, name);
CREATE INDEX idx_clients_server_type ON clients(server_type, name);
CREATE INDEX idx_clients_full_update ON clients(last_full_update, name);
CREATE INDEX idx_clients_security_patch ON clients(last_security_patch, name);
CREATE INDEX idx_clients_os_update ON clients(last_os_update, name);
CREATE INDEX idx_clients_backup_verified ON clients(last_backup_verified, name);

CREATE TABLE client_apps (
    app       TEXT NOT NULL,
    client_id UUID NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    PRIMARY KEY (app, client_id)
);
CREATE INDEX idx_client_apps_client ON client_apps(client_id);

-- Every past state of a client, kept after destroy and after deletion.
CREATE TABLE client_history (
    id          BIGSERIAL PRIMARY KEY,
    client_id   UUID NOT NULL,
    name        TEXT NOT NULL,
    revision    BIGINT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    snapshot    JSONB NOT NULL
);
CREATE INDEX idx_client_history_name ON client_history(name, revision DESC);
