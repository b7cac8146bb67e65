-- What a job found, for the jobs whose outcome is a finding (`volume verify`: "equal, 64 MiB
-- compared"); a failure's finding stays in `error`.
ALTER TABLE jobs ADD COLUMN result TEXT;
-- Why a running job is not moving yet (a flatten waiting for one of the backend's
-- rbd_concurrent_flatten_operations slots); cleared when it goes on.
ALTER TABLE jobs ADD COLUMN wait_reason TEXT;
