-- Change stamps: every insert or update of a volume, snapshot or job row gives it a stamp
-- greater than any before, so a reader asks only for rows changed since the last stamp it
-- saw. SQLite runs one writer at a time and a trigger runs inside the writing transaction, so
-- stamps follow commit order: a reader that saw stamp N has seen every row stamped <= N.
CREATE TABLE change_counter (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
INSERT INTO change_counter (id, value) VALUES (1, 0);

ALTER TABLE volumes ADD COLUMN stamp BIGINT NOT NULL DEFAULT 0;
ALTER TABLE snapshots ADD COLUMN stamp BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stamp BIGINT NOT NULL DEFAULT 0;
CREATE INDEX volumes_stamp ON volumes (stamp);
CREATE INDEX snapshots_stamp ON snapshots (stamp);
CREATE INDEX jobs_stamp ON jobs (stamp);

CREATE TRIGGER volumes_stamp_insert AFTER INSERT ON volumes BEGIN
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  UPDATE volumes SET stamp = (SELECT value FROM change_counter WHERE id = 1) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER volumes_stamp_update AFTER UPDATE ON volumes WHEN NEW.stamp = OLD.stamp BEGIN
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  UPDATE volumes SET stamp = (SELECT value FROM change_counter WHERE id = 1) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER snapshots_stamp_insert AFTER INSERT ON snapshots BEGIN
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  UPDATE snapshots SET stamp = (SELECT value FROM change_counter WHERE id = 1) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER snapshots_stamp_update AFTER UPDATE ON snapshots WHEN NEW.stamp = OLD.stamp BEGIN
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  UPDATE snapshots SET stamp = (SELECT value FROM change_counter WHERE id = 1) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER jobs_stamp_insert AFTER INSERT ON jobs BEGIN
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  UPDATE jobs SET stamp = (SELECT value FROM change_counter WHERE id = 1) WHERE rowid = NEW.rowid;
END;
CREATE TRIGGER jobs_stamp_update AFTER UPDATE ON jobs WHEN NEW.stamp = OLD.stamp BEGIN
  UPDATE change_counter SET value = value + 1 WHERE id = 1;
  UPDATE jobs SET stamp = (SELECT value FROM change_counter WHERE id = 1) WHERE rowid = NEW.rowid;
END;

-- Rows written before stamps existed get one each, so a first incremental read sees them.
UPDATE volumes SET stamp = 1;
UPDATE snapshots SET stamp = 1;
UPDATE jobs SET stamp = 1;
UPDATE change_counter SET value = 1 WHERE id = 1;
