-- Hosts, client deployments and their sync (seed cluster-lifecycle-deregistration.md),
-- PostgreSQL edition. Everything under a cluster goes with it (ON DELETE CASCADE);
-- the deregistration check runs first, in the same transaction.

CREATE TABLE hosts (
    id                UUID PRIMARY KEY,
    cluster_id        UUID NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    hostname          TEXT NOT NULL,
    address           TEXT,
    last_heartbeat_at TIMESTAMPTZ,
    orphaned          BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (cluster_id, hostname)
);
CREATE INDEX idx_hosts_heartbeat ON hosts(last_heartbeat_at);

CREATE TABLE client_deployments (
    id                   UUID PRIMARY KEY,
    host_id              UUID NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    client_id            UUID NOT NULL REFERENCES clients(id) ON DELETE RESTRICT,
    container_name       TEXT NOT NULL,
    sync_enabled         BOOLEAN NOT NULL DEFAULT FALSE,
    last_sync_at         TIMESTAMPTZ,
    last_sync_status     TEXT NOT NULL DEFAULT 'pending',
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    created_at           TIMESTAMPTZ NOT NULL,
    UNIQUE (host_id, container_name),
    CONSTRAINT valid_sync_status CHECK (last_sync_status IN ('success', 'failed', 'running', 'pending', 'stopped'))
);
CREATE INDEX idx_deployments_client ON client_deployments(client_id);
CREATE INDEX idx_deployments_sync ON client_deployments(host_id, sync_enabled);

CREATE TABLE sync_jobs (
    id            UUID PRIMARY KEY,
    deployment_id UUID NOT NULL REFERENCES client_deployments(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('full', 'incremental')),
    status        TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    rows_synced   BIGINT,
    error         TEXT
);
CREATE INDEX idx_sync_jobs_deployment ON sync_jobs(deployment_id, started_at DESC);

CREATE TABLE sync_conflicts (
    id            UUID PRIMARY KEY,
    deployment_id UUID NOT NULL REFERENCES client_deployments(id) ON DELETE CASCADE,
    at            TIMESTAMPTZ NOT NULL,
    table_name    TEXT NOT NULL,
    row_key       TEXT NOT NULL,
    resolution    TEXT NOT NULL
);
CREATE INDEX idx_sync_conflicts_deployment ON sync_conflicts(deployment_id, at DESC);

CREATE TABLE cluster_leaders (
    cluster_id       UUID PRIMARY KEY REFERENCES clusters(id) ON DELETE CASCADE,
    host_id          UUID NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    lease_expires_at TIMESTAMPTZ NOT NULL,
    term             BIGINT NOT NULL
);
