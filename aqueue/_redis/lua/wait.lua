-- Register a job that waits for other jobs (options(after=...), a chain's later step, a chord's
-- callback) or a workflow's parent record, in one step: its record, what it waits for and how
-- to enqueue or finish it once they ended. Runs before the dependencies learn of it (depend.lua),
-- so whoever sees a dependency end finds this in place.
-- Told as enqueued in the queue's event stream now, as a delayed job is at its enqueue: its
-- release later is no event (the worker that starts it tells "started"), an end without a run
-- (a failed dependency, a workflow's parent finishing) is told by unblock.lua.
-- KEYS: job record, wait hash, pending set (dependencies not ended yet), members list,
--       the queue's event stream
-- ARGV: status (scheduled | running), task name, record ttl in seconds,
--       expiry in ms from the server's now (0: none; kept as the entry's "x" field),
--       dependency count n, n dependency ids, member count m, m member ids,
--       then field/value pairs of the wait hash, then events kept (0: none)
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'task', ARGV[2], 'enqueued_at', now,
  'attempts', 0)
redis.call('EXPIRE', KEYS[1], ttl)
-- In chunks: unpack() of thousands of values overflows Lua's stack.
local function add(command, key, first, count)
  for i = first, first + count - 1, 1000 do
    redis.call(command, key, unpack(ARGV, i, math.min(i + 999, first + count - 1)))
  end
  if count > 0 then
    redis.call('EXPIRE', key, ttl)
  end
end
local deps = tonumber(ARGV[5])
add('SADD', KEYS[3], 6, deps)
local members = tonumber(ARGV[6 + deps])
redis.call('DEL', KEYS[4])
add('RPUSH', KEYS[4], 7 + deps, members)
local pairs_at = 7 + deps + members
redis.call('HSET', KEYS[2], unpack(ARGV, pairs_at, #ARGV - 1))
local expires_in = tonumber(ARGV[4])
if expires_in > 0 then
  -- On the server's clock, from now, as enqueue.lua sets it: waiting counts against it.
  redis.call('HSET', KEYS[2], 'x', now + expires_in)
end
redis.call('EXPIRE', KEYS[2], ttl)
emit(KEYS[5], ARGV[#ARGV], 'enqueued', redis.call('HGET', KEYS[2], 'j'), ARGV[2])
return 1
