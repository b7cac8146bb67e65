-- Backups of volumes (`ember backup`): one row each. The data is in the backup store, a
-- directory (`backup_posix_path`) of content-addressed chunks and one manifest per backup, so
-- a chunk that several backups hold is stored once.
CREATE TABLE backups (
    id            TEXT   PRIMARY KEY,
    name          TEXT   NOT NULL,
    volume_id     TEXT   NOT NULL,
    size_bytes    BIGINT NOT NULL,
    status        TEXT   NOT NULL,
    status_reason TEXT,
    backend       TEXT   NOT NULL,
    host          TEXT,
    parent_id     TEXT,
    data_bytes    BIGINT NOT NULL DEFAULT 0,
    stored_bytes  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    deleted_at    BIGINT
);
CREATE INDEX backups_volume ON backups (volume_id);
