-- Change stamps: every insert or update of a volume, snapshot or job row is stamped with the
-- id of the transaction that wrote it (xid8, always increasing). A reader takes the xmin of
-- its snapshot (every transaction below it has ended) before it reads, and next time asks
-- for rows stamped >= that xmin: a transaction that was still running, even one that
-- commits after a later one, is never missed; a few rows are read twice, which is harmless.
-- Writers also NOTIFY `ember_changes` with the table's name, delivered when they commit, so
-- consoles and services refresh at once instead of polling. The trigger is per row on purpose:
-- a statement trigger fires even when an UPDATE matches nothing (every empty claim attempt
-- would wake everyone, and wake the claimers again); PostgreSQL delivers one notification per
-- payload per transaction however many rows raised it.
ALTER TABLE volumes ADD COLUMN stamp BIGINT NOT NULL DEFAULT 0;
ALTER TABLE snapshots ADD COLUMN stamp BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stamp BIGINT NOT NULL DEFAULT 0;
CREATE INDEX volumes_stamp ON volumes (stamp);
CREATE INDEX snapshots_stamp ON snapshots (stamp);
CREATE INDEX jobs_stamp ON jobs (stamp);

CREATE FUNCTION ember_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.stamp := CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT);
  RETURN NEW;
END $$;

CREATE FUNCTION ember_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('ember_changes', TG_TABLE_NAME);
  RETURN NULL;
END $$;

CREATE TRIGGER volumes_stamp BEFORE INSERT OR UPDATE ON volumes FOR EACH ROW EXECUTE FUNCTION ember_stamp();
CREATE TRIGGER snapshots_stamp BEFORE INSERT OR UPDATE ON snapshots FOR EACH ROW EXECUTE FUNCTION ember_stamp();
CREATE TRIGGER jobs_stamp BEFORE INSERT OR UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION ember_stamp();
CREATE TRIGGER volumes_notify AFTER INSERT OR UPDATE OR DELETE ON volumes FOR EACH ROW EXECUTE FUNCTION ember_notify();
CREATE TRIGGER snapshots_notify AFTER INSERT OR UPDATE OR DELETE ON snapshots FOR EACH ROW EXECUTE FUNCTION ember_notify();
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OR DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION ember_notify();
CREATE TRIGGER services_notify AFTER INSERT OR UPDATE OR DELETE ON services FOR EACH ROW EXECUTE FUNCTION ember_notify();
