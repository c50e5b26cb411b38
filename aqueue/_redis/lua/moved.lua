-- Whether a job whose record says `scheduled`, due at `due_at` (its record's), was moved
-- into its stream: the look that moves a due job leaves its record as it was (see poll.lua),
-- so such a job is queued until its start marks it running. Before its due time (on the
-- server's clock, on which due_at was written) it was not, and nothing is read; once due, it
-- was moved when its member is no longer in the delayed set. The set is looked at only then,
-- and here, not by the reader: the members of one enqueue_many share their score, and a reader
-- of each job's status would take them all in for each.
-- Returns 1 when it was moved, else 0.
local delayed = KEYS[1]
-- epoch ms
local due_at = ARGV[1]
local job_id = ARGV[2]
if tonumber(due_at) > now_ms() then
  return 0
end
return delayed_member(delayed, due_at, job_id) and 0 or 1
