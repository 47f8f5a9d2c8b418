-- Selective event subscriptions (issue 13 item 7): `type=` and `resource_id=`
-- filters of the change log read in revision order from an index, so a rare
-- filter does not scan every event after the cursor.
CREATE INDEX idx_changes_type_revision ON changes(event_type, revision);
CREATE INDEX idx_changes_resource_revision ON changes(resource_id, revision);
