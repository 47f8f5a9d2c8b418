-- Credentials bound to the origins they were validated against (issue 11):
-- `origins` is a JSON object component -> `scheme://host:port`; `unbound_at`
-- is set when a cluster update moves a URL to another origin, and from then
-- on the credentials are presented nowhere until stored again or re-validated.
-- Existing credentials are bound to their cluster's URLs as they are now (the
-- whole URLs: the server reduces them to origins when it reads them).
ALTER TABLE cluster_credentials ADD COLUMN origins JSONB NOT NULL DEFAULT '{}';
ALTER TABLE cluster_credentials ADD COLUMN unbound_at TIMESTAMPTZ;
UPDATE cluster_credentials k SET origins = jsonb_build_object(
        'api_server', c.api_server_url,
        'prometheus', c.endpoints->>'prometheus_url',
        'tempo', c.endpoints->>'tempo_url',
        'loki', c.endpoints->>'loki_url')
    FROM clusters c WHERE c.id = k.cluster_id;
