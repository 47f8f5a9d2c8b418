-- Listings show a prefix only of tokens the server generated (`frg_` + 43
-- random characters): the first characters of an admin-chosen
-- FLEETREG_ADMIN_TOKEN are part of its secret, so they are no longer kept.
UPDATE api_tokens SET prefix = '' WHERE prefix NOT LIKE 'frg\_%' ESCAPE '\';
