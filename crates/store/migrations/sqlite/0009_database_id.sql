-- The database's identity (issue 14): a random 64-bit id created with the
-- schema, so that files kept beside the database (the audit head file) can
-- tell this database from another one in the same place, or from one that
-- replaced it (a reset). A copy or restored backup keeps the id.
INSERT INTO meta (key, value) VALUES ('database_id', random());
