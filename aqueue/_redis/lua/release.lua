-- Free the concurrency slot of an entry whose outcome was written (or that was handed back),
-- and make the job parked longest for that slot due at once. Runs in the same round trip right
-- after the finish or requeue script of a task with max_concurrency.
-- Returns 1 when a slot was freed.
local stream = KEYS[1]
-- members "<stream> <entry id>"
local holders = KEYS[2]
local parked_line = KEYS[3]
local delayed = KEYS[4]
local group = ARGV[1]
local entry_id = ARGV[2]
if #redis.call('XPENDING', stream, group, entry_id, entry_id, 1) > 0 then
  -- Still pending: the outcome was not written (the entry runs again and keeps its slot), or
  -- another worker claimed it (this worker's lease lapsed) and holds the slot now.
  return 0
end
if redis.call('ZREM', holders, stream .. ' ' .. entry_id) == 0 then
  return 0
end
local now = now_ms()
while true do
  local first = redis.call('ZPOPMIN', parked_line)
  if #first == 0 then
    break
  end
  -- Members no longer in the delayed set (came back after their lease, purged) are dropped.
  if redis.call('ZSCORE', delayed, first[1]) then
    delay(delayed, now, first[1])
    break
  end
end
return 1
