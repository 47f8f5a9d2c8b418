-- Tamper-evident audit log: every entry written from now on carries
-- mac = HMAC-SHA256(key, prev_mac || canonical(entry)) (crates/store/src/audit_chain.rs),
-- key_id names the master key the MAC key was derived from (HKDF), and ids are
-- assigned densely by the writer under the write lock, so a gap is a deletion.
-- Rows written before this migration keep mac NULL: a legacy prefix that
-- `fleetreg audit verify` counts but cannot verify (the key is not in the
-- database, so they cannot be chained here).
ALTER TABLE audit_log ADD COLUMN mac TEXT;
ALTER TABLE audit_log ADD COLUMN key_id TEXT;
-- GET /api/v1/audit filters by actor and action, paged by id.
CREATE INDEX idx_audit_log_actor ON audit_log(actor, id);
CREATE INDEX idx_audit_log_action ON audit_log(action, id);
