-- ember schema, SQLite flavour. Times are Unix milliseconds (UTC) in both engines, so that one
-- set of queries serves SQLite and PostgreSQL through sqlx's Any driver.

CREATE TABLE services (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    host            TEXT    NOT NULL,          -- host@backend, as Cinder writes it
    binary_name     TEXT    NOT NULL,          -- ember-volume (Cinder: cinder-volume)
    backend         TEXT    NOT NULL,
    cluster         TEXT,
    driver          TEXT    NOT NULL,
    disabled        BIGINT  NOT NULL DEFAULT 0,       -- 0/1: sqlx Any has no SQLite bool
    disabled_reason TEXT,
    error           TEXT,                      -- why the backend could not start, if it could not
    version         TEXT    NOT NULL,
    pid             BIGINT,
    created_at      BIGINT  NOT NULL,
    started_at      BIGINT,
    updated_at      BIGINT,                    -- last heartbeat
    stopped_at      BIGINT,                    -- clean stop; NULL while running or after a crash
    report_count    BIGINT  NOT NULL DEFAULT 0,
    lateness_ms     TEXT    NOT NULL DEFAULT '',  -- recent heartbeat lateness, comma-separated ms
    capacity_total  BIGINT,
    capacity_free   BIGINT,
    capacity_provisioned BIGINT,
    capacity_at     BIGINT,
    UNIQUE (host, binary_name)
);

CREATE TABLE volumes (
    id               TEXT    PRIMARY KEY,      -- UUID
    name             TEXT    NOT NULL,
    size_bytes       BIGINT  NOT NULL,
    status           TEXT    NOT NULL,
    backend          TEXT    NOT NULL,
    host             TEXT,
    source_snapshot_id TEXT,
    source_volume_id TEXT,
    clone_depth      BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    deleted_at       BIGINT
);
CREATE INDEX volumes_backend ON volumes (backend, status);
CREATE INDEX volumes_name ON volumes (name);

CREATE TABLE snapshots (
    id          TEXT   PRIMARY KEY,
    name        TEXT   NOT NULL,
    volume_id   TEXT   NOT NULL,
    size_bytes  BIGINT NOT NULL,
    status      TEXT   NOT NULL,
    backend     TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE INDEX snapshots_volume ON snapshots (volume_id);

CREATE TABLE jobs (
    id           TEXT   PRIMARY KEY,
    kind         TEXT   NOT NULL,             -- create, clone, flatten, extend, delete, snapshot_create, ...
    target_id    TEXT   NOT NULL,             -- volume or snapshot id
    backend      TEXT   NOT NULL,
    state        TEXT   NOT NULL,             -- queued, running, succeeded, failed, cancelled
    params       TEXT   NOT NULL DEFAULT '{}',
    bytes_done   BIGINT NOT NULL DEFAULT 0,
    bytes_total  BIGINT NOT NULL DEFAULT 0,
    error        TEXT,
    requested_by TEXT   NOT NULL,             -- OS user, and the SSH client if any
    claimed_by   TEXT,                        -- service host that runs it
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX jobs_state ON jobs (backend, state);
CREATE INDEX jobs_target ON jobs (target_id);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    host     TEXT,
    kind     TEXT   NOT NULL,
    target   TEXT,
    message  TEXT   NOT NULL
);
CREATE INDEX events_at ON events (at);
