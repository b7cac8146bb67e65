-- The audit log follows live: an event written alone (a stale lock broken, a reconcile finding)
-- NOTIFYs `ember_changes` with `events`, so attached consoles' Events views see it at once
-- instead of at the 15 s fallback poll. Job runners wake on `jobs` only, so this claims nothing.
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION ember_notify();
