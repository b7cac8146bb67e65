-- The snapshot a volume was flattened from: what `ember volume verify` compares it with by
-- default while that snapshot still exists (a flatten clears source_snapshot_id).
ALTER TABLE volumes ADD COLUMN flattened_from TEXT;
