-- The snapshot a volume was flattened from: what `ember volume verify` compares it with by
-- default while that snapshot still exists (a flatten clears source_snapshot_id).
ALTER TABLE volumes ADD COLUMN flattened_from TEXT;
-- What a job found, for the jobs whose outcome is a finding (`volume verify`: "equal, 64 MiB
-- compared"); a failure's finding stays in `error`.
ALTER TABLE jobs ADD COLUMN result TEXT;
