-- The edge registry and push-sync state (seed service-registry-push-sync.md),
-- SQLite edition: domains, edge nodes (VPS and laptops), services, one routing
-- per service, each node's desired configuration and sync state, and the sync
-- controller's lease. A routing's domains and nodes are mirrored into join
-- tables whose RESTRICT keys keep a named domain or node from being removed
-- (and make "which routings name it" an index lookup).

CREATE TABLE edge_domains (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    region      TEXT,
    revision    INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE edge_nodes (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL CHECK (kind IN ('vps', 'laptop')),
    overlay_address TEXT NOT NULL UNIQUE,
    public_address  TEXT UNIQUE,
    region          TEXT,
    provider        TEXT,
    login           TEXT,
    revision        INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE edge_services (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    subdomain   TEXT NOT NULL,
    upstreams   TEXT NOT NULL,
    cluster_id  BLOB REFERENCES clusters(id) ON DELETE SET NULL,
    namespace   TEXT,
    description TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL CHECK (state IN ('active', 'gone')),
    origin      TEXT NOT NULL CHECK (origin IN ('manual', 'cluster')),
    revision    INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX idx_edge_services_cluster ON edge_services(cluster_id);

CREATE TABLE edge_routings (
    service_id BLOB PRIMARY KEY REFERENCES edge_services(id) ON DELETE RESTRICT,
    domains    TEXT NOT NULL,
    nodes      TEXT NOT NULL,
    strategy   TEXT NOT NULL CHECK (strategy IN ('round-robin', 'primary-backup', 'geo')),
    revision   INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE edge_routing_domains (
    service_id BLOB NOT NULL REFERENCES edge_routings(service_id) ON DELETE CASCADE,
    domain_id  BLOB NOT NULL REFERENCES edge_domains(id) ON DELETE RESTRICT,
    PRIMARY KEY (service_id, domain_id)
);
CREATE INDEX idx_edge_routing_domains_domain ON edge_routing_domains(domain_id);

CREATE TABLE edge_routing_nodes (
    service_id BLOB NOT NULL REFERENCES edge_routings(service_id) ON DELETE CASCADE,
    node_id    BLOB NOT NULL REFERENCES edge_nodes(id) ON DELETE RESTRICT,
    PRIMARY KEY (service_id, node_id)
);
CREATE INDEX idx_edge_routing_nodes_node ON edge_routing_nodes(node_id);

-- desired_config is the exact JSON text the writer compares with (TEXT on
-- both engines: JSONB would reformat it).
CREATE TABLE edge_node_sync (
    node_id           BLOB PRIMARY KEY REFERENCES edge_nodes(id) ON DELETE CASCADE,
    status            TEXT NOT NULL CHECK (status IN ('active', 'failed', 'offline')),
    desired_revision  INTEGER NOT NULL,
    desired_config    TEXT NOT NULL,
    applied_revision  INTEGER,
    last_sync_at      TEXT,
    last_heartbeat_at TEXT,
    push_attempts     INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    up                INTEGER NOT NULL DEFAULT 1
);

-- One row: who runs the sync controller, until when.
CREATE TABLE edge_controller_lease (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT,
    until  TEXT
);
INSERT INTO edge_controller_lease (id, holder, until) VALUES (1, NULL, NULL);

-- The `agent` role, whose tokens are bound to one node (by name); `node` is
-- NULL for every other token. SQLite cannot change a CHECK constraint in
-- place: the table is rebuilt (same columns, same UNIQUE constraints).
CREATE TABLE api_tokens_new (
    id         BLOB PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL
               CHECK (role IN ('admin', 'operator', 'viewer', 'auditor', 'agent')),
    token_hash TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    node       TEXT,
    CHECK ((role = 'agent') = (node IS NOT NULL))
);
INSERT INTO api_tokens_new (id, name, role, token_hash, prefix, created_at, expires_at, revoked_at)
    SELECT id, name, role, token_hash, prefix, created_at, expires_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
