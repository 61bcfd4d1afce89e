-- Every read of a workspace with resources looks up its resources' metadata items, and deleting a resource
-- cascades to them; without this index both scan the whole table, which grows with every build.
-- `id` second: the items are read in insertion order.
CREATE INDEX workspace_resource_metadata_resource_idx
    ON workspace_resource_metadata (workspace_resource_id, id);
