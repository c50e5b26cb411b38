-- Make a job known as a dependency of a waiting job, unless it already ended. Check and
-- register are one step with the status change in finish.lua (same slot): either this sees
-- the end (the caller resolves the waiting job itself) or the finishing worker finds the
-- dependents set and resolves it before it acks.
-- Returns the dependency's final status, "unknown" when it has no status, or "" when
-- registered.
local record = KEYS[1]
local dependents = KEYS[2]
local queued = KEYS[3]
local waiting_job = ARGV[1]
-- seconds to keep the set
local ttl = ARGV[2]
-- "1" when the dependency is about to be enqueued (it has no status yet)
local fresh = ARGV[3]
if fresh ~= '1' then
  local status = redis.call('HGET', record, 'status')
  if not status and queued_state(record, queued) then
    status = 'queued'
  end
  if not status then
    return 'unknown'
  end
  if ended(status) then
    return status
  end
end
-- A dependency about to be enqueued is registered before it is written, so it cannot end
-- before: a job that was never written keeps no status, so it reads as unknown.
redis.call('SADD', dependents, waiting_job)
redis.call('EXPIRE', dependents, ttl)
return ''
