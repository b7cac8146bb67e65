-- What each backup read from its volume: all the data for a full backup, only what changed
-- since the earlier backup's snapshot for an incremental one on rbd.
ALTER TABLE backups ADD COLUMN read_bytes BIGINT NOT NULL DEFAULT 0;
