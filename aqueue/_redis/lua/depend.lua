-- Make a job known as a dependency of a waiting job, unless it already ended. Check and
-- register are one step with the status change in finish.lua (same record, same slot): either
-- this sees the end (the caller resolves the waiting job itself) or the finishing worker sees
-- the "dependents" field and resolves it before it acks.
-- KEYS: dependency's job record, dependency's dependents set, dependency's "queued" hash
-- ARGV: waiting job id, seconds to keep the set (and a fresh record),
--       "1" when the dependency is about to be enqueued (its record does not exist yet)
-- Returns the dependency's final status, "unknown" when it has no record, or "" when registered.
if ARGV[3] == '1' then
  -- Marked before it is written, so it cannot end before it is marked. enqueue.lua adds the
  -- status; a job that was never written keeps no status, so it reads as unknown.
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('HSET', KEYS[1], 'dependents', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return ''
end
local status = redis.call('HGET', KEYS[1], 'status')
local queued = not status and queued_state(KEYS[1], KEYS[3])
if queued then
  -- It needs its record now: the "dependents" mark lives there.
  record_queued(KEYS[1], KEYS[3], queued, ARGV[2])
  status = 'queued'
end
if not status then
  return 'unknown'
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return status
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'dependents', 1)
return ''
