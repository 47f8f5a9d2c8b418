-- Fleet summary (GET /api/v1/fleet/summary): one covering index holding every
-- column the summary aggregates, so it can be answered by an index-only scan.
CREATE INDEX idx_clusters_fleet_summary
    ON clusters(state, cluster_type, environment, gpu_count, has_cnf, health_score);
