-- Cluster registry schema (seed 7.1), PostgreSQL edition.
-- Queryable fields (state, health_score, has_gpu, gpu_count, has_cnf) are real
-- columns beside the JSON the API returns.

CREATE TABLE clusters (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name             VARCHAR(63) UNIQUE NOT NULL,
    display_name     VARCHAR(128),
    api_server_url   VARCHAR(512) NOT NULL,
    cluster_type     VARCHAR(20) NOT NULL DEFAULT 'SPOKE',
    platform         VARCHAR(20) NOT NULL DEFAULT 'OPENSHIFT',
    platform_version VARCHAR(64),
    region           VARCHAR(64),
    environment      VARCHAR(20) NOT NULL DEFAULT 'DEVELOPMENT',
    labels           JSONB NOT NULL DEFAULT '{}',
    endpoints        JSONB NOT NULL DEFAULT '{}',
    capabilities     JSONB,
    status           JSONB NOT NULL DEFAULT '{"state": "UNKNOWN"}',
    state            VARCHAR(20) NOT NULL DEFAULT 'UNKNOWN',
    health_score     INTEGER NOT NULL DEFAULT 0,
    has_gpu          BOOLEAN NOT NULL DEFAULT FALSE,
    gpu_count        BIGINT NOT NULL DEFAULT 0,
    has_cnf          BOOLEAN NOT NULL DEFAULT FALSE,
    revision         BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_seen_at     TIMESTAMPTZ,

    CONSTRAINT valid_name CHECK (name ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
    CONSTRAINT valid_cluster_type CHECK (cluster_type IN ('HUB', 'SPOKE', 'EDGE', 'FAR_EDGE')),
    CONSTRAINT valid_platform CHECK (platform IN ('OPENSHIFT', 'KUBERNETES', 'MICROSHIFT')),
    CONSTRAINT valid_environment CHECK (environment IN ('PRODUCTION', 'STAGING', 'DEVELOPMENT', 'LAB')),
    CONSTRAINT valid_state CHECK (state IN ('UNKNOWN', 'ONLINE', 'DEGRADED', 'OFFLINE'))
);

-- The seed's indexes; the filter indexes end in name so filtered lists come out sorted.
CREATE INDEX idx_clusters_name ON clusters(name);
CREATE INDEX idx_clusters_cluster_type ON clusters(cluster_type, name);
CREATE INDEX idx_clusters_environment ON clusters(environment, name);
CREATE INDEX idx_clusters_region ON clusters(region, name);
CREATE INDEX idx_clusters_status_state ON clusters(state, name);
CREATE INDEX idx_clusters_labels ON clusters USING GIN(labels);
CREATE INDEX idx_clusters_capabilities_gpu ON clusters(has_gpu, name);
CREATE INDEX idx_clusters_capabilities_cnf ON clusters(has_cnf, name);

-- Partial-name search uses a trigram index where the pg_trgm extension can be had.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX idx_clusters_name_trgm ON clusters USING GIN (name gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm unavailable; partial name search scans idx_clusters_name';
END;
$$;

CREATE TABLE changes (
    revision    BIGINT PRIMARY KEY,
    event_type  VARCHAR(64) NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    resource    VARCHAR(32) NOT NULL,
    resource_id UUID NOT NULL,
    payload     JSONB NOT NULL
);
CREATE INDEX idx_changes_occurred_at ON changes(occurred_at);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT,
    action      TEXT NOT NULL,
    resource    TEXT NOT NULL,
    resource_id UUID,
    result      TEXT NOT NULL,
    error_code  TEXT,
    revision    BIGINT,
    source      TEXT,
    request_id  TEXT
);
CREATE INDEX idx_audit_log_at ON audit_log(at);
CREATE INDEX idx_audit_log_resource ON audit_log(resource_id);

-- Counters: last assigned revision (locked by each write batch until commit, so
-- revisions become visible in order across replicas), pruned revision, outbox cursor.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('revision', 0), ('pruned_through', 0), ('outbox_published', 0);
