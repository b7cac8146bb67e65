-- The storage client a job works through when it is not its service's (a throttled rbd flatten
-- paces on a librados client of its own, so that its pauses hold no thread that other images
-- share). Recorded under the claim before the job writes: a peer taking the job over fences it
-- too.
ALTER TABLE jobs ADD COLUMN client_address TEXT;
