-- Health-driven failover (issue 13 item 10): a node is up for routing when
-- its agent's heartbeats arrive AND the HTTP check through it passes. `up`
-- stays the column routing reads (their conjunction, kept by every write);
-- `heartbeat_ok` is the heartbeat half (what `up` meant before), `check_ok`
-- the check half with why it fails and when its outcome last changed (the
-- controller writes only changes).
ALTER TABLE edge_node_sync ADD COLUMN heartbeat_ok BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE edge_node_sync SET heartbeat_ok = up;
ALTER TABLE edge_node_sync ADD COLUMN check_ok BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE edge_node_sync ADD COLUMN check_error TEXT;
ALTER TABLE edge_node_sync ADD COLUMN check_changed_at TIMESTAMPTZ;
