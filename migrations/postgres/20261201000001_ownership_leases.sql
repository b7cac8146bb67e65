-- Several hosts on one database (Cinder's host@backend / cluster@backend ownership).
--
-- volumes.host and snapshots.host: the owner, `host@backend`, or `cluster@backend` for a
-- clustered backend. Only a service of that owner claims jobs on them.
-- jobs.owner: copied from the target's owner when the job is queued.
-- jobs.claim_token: bumped by every claim; every write a worker makes for a job carries the
-- token it claimed with, and is refused once the token has moved (a takeover happened).
-- services.client_address: the librados client address of an rbd backend's connection, so a
-- peer can blocklist it before taking its jobs over.
ALTER TABLE snapshots ADD COLUMN host TEXT;
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN claim_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE services ADD COLUMN client_address TEXT;
CREATE INDEX jobs_owner ON jobs (owner, state);
CREATE INDEX volumes_host ON volumes (host);

-- jobs.volume_id: the volume a job works on (a snapshot job: the snapshot's volume; a clone
-- made with --source: the source volume). One unfinished job per volume, enforced by the
-- database: two hosts submitting or claiming at the same moment cannot both win. Older
-- duplicates (possible before this index) are failed first, so the index can be built.
ALTER TABLE jobs ADD COLUMN volume_id TEXT;
UPDATE jobs SET volume_id = target_id WHERE kind NOT IN ('snapshot_create', 'snapshot_delete');
UPDATE jobs SET volume_id = (SELECT s.volume_id FROM snapshots s WHERE s.id = jobs.target_id)
 WHERE kind IN ('snapshot_create', 'snapshot_delete');
UPDATE jobs SET state = 'queued', claimed_by = NULL
 WHERE state = 'running' AND EXISTS (
   SELECT 1 FROM jobs o WHERE o.volume_id = jobs.volume_id AND o.id < jobs.id AND o.state = 'running');
UPDATE jobs SET state = 'failed', error = 'another unfinished job works on the same volume (found when upgrading)'
 WHERE state = 'queued' AND EXISTS (
   SELECT 1 FROM jobs o WHERE o.volume_id = jobs.volume_id AND o.id <> jobs.id
     AND (o.state = 'running'
          OR (o.state = 'queued' AND (o.created_at < jobs.created_at
              OR (o.created_at = jobs.created_at AND o.id < jobs.id)))));
CREATE UNIQUE INDEX jobs_one_active ON jobs (volume_id) WHERE state IN ('queued', 'running');
