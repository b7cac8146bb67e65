-- Each heartbeat records how far its host's clock is from the database's (ms, positive: ahead),
-- so that `ember doctor` names a host whose clock drifts. Ages never use it: every process
-- corrects its clock to the database's.
ALTER TABLE services ADD COLUMN clock_skew_ms BIGINT;
-- When this run's first setup check finished: until then a heartbeating service is
-- "starting", neither up (it takes no work) nor down.
ALTER TABLE services ADD COLUMN ready_at BIGINT;
UPDATE services SET ready_at = updated_at;
