-- Credentials bound to the origins they were validated against (issue 11):
-- `origins` is a JSON object component -> `scheme://host:port`; `unbound_at`
-- is set when a cluster update moves a URL to another origin, and from then
-- on the credentials are presented nowhere until stored again or re-validated.
-- Existing credentials are bound to their cluster's URLs as they are now (the
-- whole URLs: the server reduces them to origins when it reads them).
ALTER TABLE cluster_credentials ADD COLUMN origins TEXT NOT NULL DEFAULT '{}';
ALTER TABLE cluster_credentials ADD COLUMN unbound_at TEXT;
UPDATE cluster_credentials SET origins = (
    SELECT json_object(
        'api_server', c.api_server_url,
        'prometheus', json_extract(c.endpoints, '$.prometheus_url'),
        'tempo', json_extract(c.endpoints, '$.tempo_url'),
        'loki', json_extract(c.endpoints, '$.loki_url'))
    FROM clusters c WHERE c.id = cluster_credentials.cluster_id);
