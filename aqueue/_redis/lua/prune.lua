-- Forget consumers that hold no pending entries, so restarts do not grow the consumer list
-- without bound. A consumer with pending entries is never deleted: that would drop them from
-- the pending list, and no worker could ever claim them again. Each priority level's stream
-- has a group of its own; a consumer is judged on each separately.
-- KEYS: stream, priority levels set
-- ARGV: group, least idle time in ms, one consumer's name ("" for any consumer)
-- Returns how many consumers were deleted (counted once per stream).
local function prune(stream)
  local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, ARGV[1])
  if not ok then
    return 0
  end
  local deleted = 0
  for _, consumer in ipairs(consumers) do
    local info = {}
    for i = 1, #consumer, 2 do
      info[consumer[i]] = consumer[i + 1]
    end
    local wanted = ARGV[3] == '' or info['name'] == ARGV[3]
    if wanted and info['pending'] == 0 and info['idle'] >= tonumber(ARGV[2]) then
      redis.call('XGROUP', 'DELCONSUMER', stream, ARGV[1], info['name'])
      deleted = deleted + 1
    end
  end
  return deleted
end
local deleted = prune(KEYS[1])
for _, level in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  deleted = deleted + prune(KEYS[1] .. ':' .. level)
end
return deleted
