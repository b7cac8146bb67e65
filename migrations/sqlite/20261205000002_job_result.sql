-- What a job found, for the jobs whose outcome is a finding (`volume verify`: "equal, 64 MiB
-- compared"); a failure's finding stays in `error`.
ALTER TABLE jobs ADD COLUMN result TEXT;
