-- Credential versions are never reused for a cluster, also across a delete and
-- a new upload: servers cache opened credentials by (cluster, version), so a
-- reused number would let a replica keep presenting deleted credentials.
-- The writer takes each new version from this counter.
ALTER TABLE clusters ADD COLUMN credential_versions BIGINT NOT NULL DEFAULT 0;
UPDATE clusters SET credential_versions =
    (SELECT version FROM cluster_credentials k WHERE k.cluster_id = clusters.id)
    WHERE EXISTS (SELECT 1 FROM cluster_credentials k WHERE k.cluster_id = clusters.id);
