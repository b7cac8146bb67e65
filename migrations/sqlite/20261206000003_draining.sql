-- `backend evacuate` / `backend drain`: no new volume is placed on a draining backend's
-- services, but they keep running their jobs (the evacuation's migrations among them), unlike
-- `service disable`, which stops claims too.
ALTER TABLE services ADD COLUMN draining BIGINT NOT NULL DEFAULT 0;
