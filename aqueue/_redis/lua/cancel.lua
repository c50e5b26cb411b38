-- Cancel a job that has not ended, in one step: its record says `cancelled` (with why) before
-- any worker can start it, so the start script refuses to run it and the finish script refuses
-- to overwrite it with a late outcome.
-- A running job is also announced in the queue's cancelled set: the workers of the queue read
-- it in their frequent promote calls and cancel the run (no extra connection or round trip).
-- A scheduled job also leaves the delayed set: waiting there until it is due, it would count
-- against the queue's length limit and in its statistics. Its member is found by its score,
-- which is the record's due time.
-- A fire-and-forget job (result_ttl=0) has no status anywhere, so nothing says whether it
-- still waits: it is only announced in the cancelled set, like a running job. Every worker of
-- the queue hears of it within milliseconds (and one that starts later looks back over the
-- set's hour), and skips the job when it comes to start it, or stops its run. Nothing is
-- added to the hot path: a worker looks up every job it starts among the ids it heard of.
-- KEYS: job record, cancelled set (job ids scored by cancel time in ms), the job's "queued" hash,
--       delayed set, the queue's event stream
-- ARGV: job id, error value (JSON: type and message), seconds to keep the record,
--       "1" when the job keeps no record (fire and forget), events kept (0: none),
--       the job's task name ("" when unknown: a record tells it)
-- Returns {status before the call ("" when there is no record), 1 if cancelled now else 0}.
local status = redis.call('HGET', KEYS[1], 'status')
local queued = not status and queued_state(KEYS[1], KEYS[3])
if queued then
  record_queued(KEYS[1], KEYS[3], queued, ARGV[3])
  status = 'queued'
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function announce()
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  -- Workers look every few milliseconds; an hour of history is plenty for one that reconnects.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600000)
end
if not status then
  if ARGV[4] == '1' then
    announce()
    emit(KEYS[5], ARGV[5], 'cancelled', ARGV[1], ARGV[6])
    return {'', 1}
  end
  return {'', 0}
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return {status, 0}
end
local due = redis.call('HGET', KEYS[1], 'due_at')
if status == 'scheduled' and due then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], due, due)) do
    local ok, fields = pcall(cmsgpack.unpack, member)
    for i = 1, ok and type(fields) == 'table' and #fields or 0, 2 do
      if fields[i] == 'j' and fields[i + 1] == ARGV[1] then
        redis.call('ZREM', KEYS[4], member)
      end
    end
  end
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'error', ARGV[2], 'finished_at', now)
redis.call('HDEL', KEYS[1], 'due_at')
redis.call('EXPIRE', KEYS[1], ARGV[3])
if status == 'running' then
  announce()
end
local unique = redis.call('HGET', KEYS[1], 'unique')
if unique and redis.call('GET', unique) == ARGV[1] then
  redis.call('DEL', unique)
end
redis.pcall('PUBLISH', KEYS[1], 'cancelled')
emit(KEYS[5], ARGV[5], 'cancelled', ARGV[1], redis.call('HGET', KEYS[1], 'task'))
return {status, 1}
