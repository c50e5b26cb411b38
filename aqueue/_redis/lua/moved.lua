-- The status of a job whose record said `scheduled` when its caller read it, as it is now:
-- the look that moves a due job into its stream leaves its record as it was (see poll.lua),
-- so a job that left the delayed set is `queued` until its start marks it running. Before its
-- due time (on the server's clock, on which due_at was written) it has not left, and nothing
-- more is read; once due, it left when its member is no longer in the delayed set. The set is
-- looked at only then, and here, not by the reader: the members of one enqueue_many share
-- their score, and a reader of each job's status would take them all in for each.
-- Returns the status (`scheduled`, `queued`, or the record's own when it changed since the
-- caller's read, "" when it is gone), so the caller never tells a status the job never had.
-- scheduled jobs' members, scored by due time
local delayed = KEYS[1]
-- the job's record
local record = KEYS[2]
local job_id = ARGV[1]
local row = redis.call('HMGET', record, 'status', 'due_at', 'parked')
local status, due_at, parked = row[1], row[2], row[3] == '1'
if status ~= 'scheduled' then
  return status or ''
end
-- A job parked for its task's concurrency is made due as soon as a slot frees (release.lua),
-- its record untouched: its member is looked for before its due time too (few jobs share the
-- score of a parking, unlike an enqueue_many's). Once made due early it reads queued, moved
-- or about to be.
if not due_at or (not parked and tonumber(due_at) > now_ms()) then
  return status
end
return delayed_member(delayed, due_at, job_id) and status or 'queued'
