-- Attachments (`ember volume attach`, `volume export`): who has a volume. A volume with a live
-- attachment is `in-use`, which refuses delete, migrate and extend; the last detach makes it
-- `available` again. `multiattach` volumes take more than one attachment at a time.
ALTER TABLE volumes ADD COLUMN multiattach BIGINT NOT NULL DEFAULT 0;
CREATE TABLE attachments (
    id            TEXT   PRIMARY KEY,
    volume_id     TEXT   NOT NULL,
    -- The consumer's host (a hypervisor), as the operator named it.
    attached_host TEXT   NOT NULL,
    instance      TEXT,
    -- rw or ro
    mode          TEXT   NOT NULL,
    -- attach (connection info handed out) or export (ember serves it over NBD)
    kind          TEXT   NOT NULL,
    -- export: nbd://ADDR:PORT, and the ember host and process that serve it
    endpoint      TEXT,
    served_by     TEXT,
    pid           BIGINT,
    asked_by      TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    detached_at   BIGINT
);
CREATE INDEX attachments_volume ON attachments (volume_id);
