-- Health history (seed 7.1): every state change plus one sample per cluster per
-- sampling period, appended by the writer. Old rows are removed by the
-- retention worker in batches (not by the seed's per-insert trigger).
CREATE TABLE cluster_health_history (
    id BIGSERIAL PRIMARY KEY,
    cluster_id UUID NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    status JSONB NOT NULL,
    state TEXT NOT NULL,
    health_score INTEGER NOT NULL,
    checked_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_health_history_cluster ON cluster_health_history(cluster_id, checked_at DESC);
CREATE INDEX idx_health_history_checked_at ON cluster_health_history(checked_at);
