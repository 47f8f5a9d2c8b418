-- Cluster registry schema (seed 7.1), SQLite edition.
-- Queryable fields (state, health_score, has_gpu, gpu_count, has_cnf) are real
-- columns beside the JSON the API returns; labels are mirrored into
-- cluster_labels so label filters use an index.

CREATE TABLE clusters (
    id               BLOB PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    display_name     TEXT CHECK (display_name IS NULL OR length(display_name) <= 128),
    api_server_url   TEXT NOT NULL CHECK (length(api_server_url) <= 512),
    cluster_type     TEXT NOT NULL DEFAULT 'SPOKE',
    platform         TEXT NOT NULL DEFAULT 'OPENSHIFT',
    platform_version TEXT CHECK (platform_version IS NULL OR length(platform_version) <= 64),
    region           TEXT CHECK (region IS NULL OR length(region) <= 64),
    environment      TEXT NOT NULL DEFAULT 'DEVELOPMENT',
    labels           TEXT NOT NULL DEFAULT '{}',
    endpoints        TEXT NOT NULL DEFAULT '{}',
    capabilities     TEXT,
    status           TEXT NOT NULL DEFAULT '{"state":"UNKNOWN"}',
    state            TEXT NOT NULL DEFAULT 'UNKNOWN',
    health_score     INTEGER NOT NULL DEFAULT 0,
    has_gpu          INTEGER NOT NULL DEFAULT 0,
    gpu_count        INTEGER NOT NULL DEFAULT 0,
    has_cnf          INTEGER NOT NULL DEFAULT 0,
    revision         INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_seen_at     TEXT,
    CONSTRAINT valid_name CHECK (length(name) BETWEEN 3 AND 63 AND name NOT GLOB '*[^a-z0-9-]*'
        AND substr(name, 1, 1) != '-' AND substr(name, -1, 1) != '-'),
    CONSTRAINT valid_cluster_type CHECK (cluster_type IN ('HUB', 'SPOKE', 'EDGE', 'FAR_EDGE')),
    CONSTRAINT valid_platform CHECK (platform IN ('OPENSHIFT', 'KUBERNETES', 'MICROSHIFT')),
    CONSTRAINT valid_environment CHECK (environment IN ('PRODUCTION', 'STAGING', 'DEVELOPMENT', 'LAB')),
    CONSTRAINT valid_state CHECK (state IN ('UNKNOWN', 'ONLINE', 'DEGRADED', 'OFFLINE'))
) ;

-- Every filter index ends in name so filtered lists come out sorted without a sort step.
CREATE INDEX idx_clusters_cluster_type ON clusters(cluster_type, name);
CREATE INDEX idx_clusters_environment ON clusters(environment, name);
CREATE INDEX idx_clusters_region ON clusters(region, name);
CREATE INDEX idx_clusters_status_state ON clusters(state, name);
CREATE INDEX idx_clusters_capabilities_gpu ON clusters(has_gpu, name);
CREATE INDEX idx_clusters_capabilities_cnf ON clusters(has_cnf, name);

CREATE TABLE cluster_labels (
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    cluster_id BLOB NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    PRIMARY KEY (key, value, cluster_id)
) WITHOUT ROWID;
CREATE INDEX idx_cluster_labels_cluster ON cluster_labels(cluster_id);

-- The change log: one row per event, revision strictly increasing.
CREATE TABLE changes (
    revision    INTEGER PRIMARY KEY,
    event_type  TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    resource    TEXT NOT NULL,
    resource_id BLOB NOT NULL,
    payload     TEXT NOT NULL
);
CREATE INDEX idx_changes_occurred_at ON changes(occurred_at);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    resource_id BLOB,
    result      TEXT NOT NULL,
    error_code  TEXT,
    revision    INTEGER,
    source      TEXT,
    request_id  TEXT
);
CREATE INDEX idx_audit_log_at ON audit_log(at);
CREATE INDEX idx_audit_log_resource ON audit_log(resource_id);

-- Counters: last assigned revision, highest pruned revision, outbox cursor.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('revision', 0), ('pruned_through', 0), ('outbox_published', 0);
