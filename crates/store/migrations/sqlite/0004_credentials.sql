-- Cluster credentials (seed 4.1 / 13): one row per cluster, every secret field
-- sealed by the vault (envelope encryption) before it reaches this table; the
-- database never holds plaintext. `sealed` is a JSON object field -> envelope.
CREATE TABLE cluster_credentials (
    cluster_id BLOB PRIMARY KEY REFERENCES clusters(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL CHECK (version >= 1),
    auth_type  TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    expires_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX idx_cluster_credentials_expires ON cluster_credentials(expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX idx_cluster_credentials_key ON cluster_credentials(key_id);

-- Proof that the configured master key is the one the data was sealed with:
-- a known value sealed at first start, opened at every start.
CREATE TABLE vault_canary (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    sealed     TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
