-- Client registry (seed client-registry.md), SQLite edition. Dates are
-- 'YYYY-MM-DD' text (text order is date order). Every filter is a real column
-- with an index ending in name (lists come out sorted without a sort step);
-- apps are mirrored into client_apps so the app filter uses an index.

CREATE TABLE clients (
    id                   BLOB PRIMARY KEY,
    name                 TEXT NOT NULL UNIQUE,
    status               TEXT NOT NULL,
    role                 TEXT NOT NULL,
    deployed_date        TEXT,
    destroyed_date       TEXT,
    server_type          TEXT,
    server_location      TEXT,
    server_ip            TEXT,
    server_id            TEXT,
    apps                 TEXT NOT NULL DEFAULT '[]',
    versions             TEXT NOT NULL DEFAULT '{}',
    urls                 TEXT NOT NULL DEFAULT '{}',
    last_full_update     TEXT,
    last_security_patch  TEXT,
    last_os_update       TEXT,
    last_backup_verified TEXT,
    notes                TEXT NOT NULL DEFAULT '',
    revision             INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    CONSTRAINT valid_client_name CHECK (length(name) BETWEEN 1 AND 63 AND name NOT GLOB '*[^a-z0-9-]*'
        AND substr(name, 1, 1) != '-' AND substr(name, -1, 1) != '-'),
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
    client_id BLOB NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    PRIMARY KEY (app, client_id)
) WITHOUT ROWID;
CREATE INDEX idx_client_apps_client ON client_apps(client_id);

-- Every past state of a client, kept after destroy and after deletion.
CREATE TABLE client_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   BLOB NOT NULL,
    name        TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    at          TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    snapshot    TEXT NOT NULL
);
CREATE INDEX idx_client_history_name ON client_history(name, revision DESC);
