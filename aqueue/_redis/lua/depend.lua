-- Make a job known as a dependency of a waiting job, unless it already ended. Check and
-- register are one step with the status change in finish.lua (same slot): either this sees
-- the end (the caller resolves the waiting job itself) or the finishing worker finds the
-- dependents set and resolves it before it acks.
-- KEYS: dependency's job record, dependency's dependents set, dependency's "queued" hash
-- ARGV: waiting job id, seconds to keep the set,
--       "1" when the dependency is about to be enqueued (it has no status yet)
-- Returns the dependency's final status, "unknown" when it has no status, or "" when
-- registered.
if ARGV[3] ~= '1' then
  local status = redis.call('HGET', KEYS[1], 'status')
  if not status and queued_state(KEYS[1], KEYS[3]) then
    status = 'queued'
  end
  if not status then
    return 'unknown'
  end
  if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
    return status
  end
end
-- A dependency about to be enqueued is registered before it is written, so it cannot end
-- before: a job that was never written keeps no status, so it reads as unknown.
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return ''
