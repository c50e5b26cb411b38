-- Free the concurrency slot of an entry whose outcome was written (or that was handed back),
-- and make the job parked longest for that slot due at once. Runs in the same pipeline right
-- after the finish or requeue script of a task with max_concurrency.
-- KEYS: the entry's stream, concurrency holders (members "<stream> <entry id>"), parked line (sorted set), delayed set
-- ARGV: group, entry id
-- Returns 1 when a slot was freed.
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) > 0 then
  -- Still pending: the outcome was not written (the entry runs again and keeps its slot), or
  -- another worker claimed it (this worker's lease lapsed) and holds the slot now.
  return 0
end
if redis.call('ZREM', KEYS[2], KEYS[1] .. ' ' .. ARGV[2]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
while true do
  local first = redis.call('ZPOPMIN', KEYS[3])
  if #first == 0 then
    break
  end
  -- Members no longer in the delayed set (came back after their lease, purged) are dropped.
  if redis.call('ZSCORE', KEYS[4], first[1]) then
    redis.call('ZADD', KEYS[4], now, first[1])
    break
  end
end
return 1
