-- The audit log follows live: an event written alone (a stale lock broken, a reconcile finding,
-- an image purged) NOTIFYs `ember_changes` with `events`, so attached consoles' Events views
-- see it at once instead of at the 15 s fallback poll. Events that come with a row change that
-- notifies anyway (a job's, a service's, a backend's, a volume's state) do not: their row's
-- notification already wakes the consoles (which gather for 100 ms before reading), and a
-- second wake-up per change cost a console at 100k volumes about 0.5 % CPU more (bench
-- console-live). Job runners wake on `jobs` only, so this claims nothing.
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW
  WHEN (NEW.kind NOT LIKE 'job\_%' AND NEW.kind NOT LIKE 'service\_%'
        AND NEW.kind NOT LIKE 'backend\_%'
        AND NEW.kind NOT IN ('state_reset', 'volume_managed', 'volume_unmanaged', 'forced_while_open'))
  EXECUTE FUNCTION ember_notify();
