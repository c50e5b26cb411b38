-- Forget consumers that hold no pending entries, so restarts do not grow the consumer list
-- without bound. A consumer with pending entries is never deleted: that would drop them from
-- the pending list, and no worker could ever claim them again. Each priority level's stream
-- has a group of its own; a consumer is judged on each separately.
-- Returns how many consumers were deleted (counted once per stream).
local levels = KEYS[1]
local streams = 2  -- KEYS[2...]: streams
local group = ARGV[1]
local least_idle_ms = tonumber(ARGV[2])
-- "" for any consumer
local consumer = ARGV[3]
local function prune(stream)
  local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', stream, group)
  if not ok then
    return 0
  end
  local deleted = 0
  for _, found in ipairs(consumers) do
    local info = {}
    for i = 1, #found, 2 do
      info[found[i]] = found[i + 1]
    end
    local wanted = consumer == '' or info['name'] == consumer
    if wanted and info['pending'] == 0 and info['idle'] >= least_idle_ms then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
      deleted = deleted + 1
    end
  end
  return deleted
end
local deleted = prune(level_stream(streams))
for _, level in ipairs(redis.call('SMEMBERS', levels)) do
  local stream, own = level_stream(streams, level)
  if own then
    deleted = deleted + prune(stream)
  end
end
return deleted
