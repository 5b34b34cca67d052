"""The data model every other part of overton speaks: schema, shards, versions, workspace, config."""
