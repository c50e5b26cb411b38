-- Register a job that waits for other jobs (options(after=...), a chain's later step, a chord's
-- callback) or a workflow's parent record, in one step: its record, what it waits for and how
-- to enqueue or finish it once they ended. Runs before the dependencies learn of it (depend.lua),
-- so whoever sees a dependency end finds this in place.
-- Told as enqueued in the queue's event stream now, as a delayed job is at its enqueue: its
-- release later is no event (the worker that starts it tells "started"), an end without a run
-- (a failed dependency, a workflow's parent finishing) is told by unblock.lua.
local record = KEYS[1]
local wait = KEYS[2]
-- dependencies not ended yet
local pending = KEYS[3]
local members = KEYS[4]
local events = KEYS[5]
-- scheduled | running
local status = ARGV[1]
local task = ARGV[2]
-- seconds
local ttl = tonumber(ARGV[3])
-- ms from the server's now (0: none; kept as the entry's FIELD.expires_at_ms)
local expires_in = tonumber(ARGV[4])
local events_limit = ARGV[5]
-- Each list after its length, then the wait hash's field/value pairs.
local lists = 6  -- ARGV[6...]: dependencies, member_ids, fields
local now = now_ms()
redis.call('HSET', record, 'status', status, 'task', task, 'enqueued_at', now, 'attempts', 0)
redis.call('EXPIRE', record, ttl)
-- In chunks: unpack() of thousands of values overflows Lua's stack.
local function add(command, key, first, count)
  for i = first, first + count - 1, 1000 do
    redis.call(command, key, unpack(ARGV, i, math.min(i + 999, first + count - 1)))
  end
  if count > 0 then
    redis.call('EXPIRE', key, ttl)
  end
end
local deps = tonumber(ARGV[lists])
add('SADD', pending, lists + 1, deps)
local member_count = tonumber(ARGV[lists + 1 + deps])
redis.call('DEL', members)
add('RPUSH', members, lists + 2 + deps, member_count)
local pairs_at = lists + 2 + deps + member_count
redis.call('HSET', wait, unpack(ARGV, pairs_at, #ARGV))
if expires_in > 0 then
  -- On the server's clock, from now, as enqueue.lua sets it: waiting counts against it.
  redis.call('HSET', wait, FIELD.expires_at_ms, now + expires_in)
end
redis.call('EXPIRE', wait, ttl)
emit(events, events_limit, 'enqueued', redis.call('HGET', wait, FIELD.job_id), task)
return 1
