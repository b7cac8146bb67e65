-- Why a snapshot exists: 'user' (asked for) or 'clone' (made under `volume create --source`,
-- as Cinder's rbd driver makes `<dest>.clone_snap`). A clone snapshot is removed by ember once
-- its last clone is flattened or deleted, and is hidden from `snapshot list`.
ALTER TABLE snapshots ADD COLUMN purpose TEXT NOT NULL DEFAULT 'user';
-- The reason a volume or snapshot went to error, shown beside its status.
ALTER TABLE volumes ADD COLUMN status_reason TEXT;
ALTER TABLE snapshots ADD COLUMN status_reason TEXT;
CREATE INDEX volumes_source_snapshot ON volumes (source_snapshot_id);
