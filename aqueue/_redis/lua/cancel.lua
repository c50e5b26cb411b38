-- Cancel a job that has not ended, in one step: its record says `cancelled` (with why) before
-- any worker can start it, so the start script refuses to run it and the finish script refuses
-- to overwrite it with a late outcome.
-- A running job is also announced on the queue's cancelled channel, which every worker of the
-- queue listens to, and kept in its cancelled set: a worker that was not listening (starting,
-- reconnecting) reads what it missed there in its next look (poll.lua).
-- A scheduled job also leaves the delayed set: waiting there until it is due, it would count
-- against the queue's length limit and in its statistics. Its member is found by its score,
-- which is the record's due time (a job whose member is gone was moved into its stream).
-- A fire-and-forget job (result_ttl=0) has no status anywhere, so nothing says whether it
-- still waits: it is only announced in the cancelled set, like a running job. Every worker of
-- the queue hears of it at once (and one that starts later looks back over the set's hour),
-- and skips the job when it comes to start it, or stops its run. Nothing is
-- added to the hot path: a worker looks up every job it starts among the ids it heard of.
-- Returns {the record's status before the call ("" when there is no record; "scheduled" for a
-- job moved into its stream, see poll.lua), 1 if cancelled now else 0}.
local record = KEYS[1]
-- job ids scored by cancel time in ms
local cancelled = KEYS[2]
local queued = KEYS[3]
local delayed = KEYS[4]
local events = KEYS[5]
-- the key the record names in its "unique" field, read before this call (it never changes)
local unique = KEYS[6]
local streams = 7  -- KEYS[7...]: streams
local job_id = ARGV[1]
-- JSON: type and message
local error_value = ARGV[2]
-- seconds to keep the record
local ttl = ARGV[3]
-- "1" when the job keeps no record (fire and forget)
local forgotten = ARGV[4]
local events_limit = ARGV[5]
-- "" when unknown: the record tells it (a job that keeps no record has only its handle's)
local task = ARGV[6]
local status = redis.call('HGET', record, 'status')
local waiting = not status and queued_state(record, queued)
if waiting then
  record_queued(record, queued, waiting, ttl,
    task_of(level_stream(streams, waiting.level), waiting.entry))
  status = 'queued'
end
local now = now_ms()
local function announce()
  redis.call('ZADD', cancelled, now, job_id)
  -- An hour of history is plenty for a worker that reconnects.
  redis.call('ZREMRANGEBYSCORE', cancelled, '-inf', now - 3600000)
  redis.pcall('SPUBLISH', cancelled, job_id)
end
if not status then
  if forgotten == '1' then
    announce()
    emit(events, events_limit, 'cancelled', job_id, task)
    return {'', 1}
  end
  return {'', 0}
end
if ended(status) then
  return {status, 0}
end
local due = redis.call('HGET', record, 'due_at')
local member = status == 'scheduled' and due and delayed_member(delayed, due, job_id)
if member then
  redis.call('ZREM', delayed, member)
end
redis.call('HSET', record, 'status', 'cancelled', 'error', error_value, 'finished_at', now)
redis.call('HDEL', record, 'due_at')
redis.call('EXPIRE', record, ttl)
if status == 'running' then
  announce()
end
if redis.call('HGET', record, 'unique') == unique and redis.call('GET', unique) == job_id then
  redis.call('DEL', unique)
end
tell(record, 'cancelled')
emit(events, events_limit, 'cancelled', job_id, redis.call('HGET', record, 'task'))
return {status, 1}
