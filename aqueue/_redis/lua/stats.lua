-- Counts for one queue, read in one step so they agree with each other.
-- Returns {queued, scheduled, running, dead, queued at the default level,
--          then a level and its queued count for each other level in use}.
local dead = KEYS[1]
local delayed = KEYS[2]
local levels = KEYS[3]
local streams = 4  -- KEYS[4...]: streams
local group = ARGV[1]
local queued, running = unfinished(level_stream(streams), group)
local default_queued = queued
local in_use = {}
for _, level in ipairs(redis.call('SMEMBERS', levels)) do
  local stream, own = level_stream(streams, level)
  if own then
    local waiting, taken = unfinished(stream, group)
    in_use[#in_use + 1] = level
    in_use[#in_use + 1] = waiting
    queued = queued + waiting
    running = running + taken
  end
end
return {queued, redis.call('ZCARD', delayed), running, redis.call('XLEN', dead), default_queued,
  unpack(in_use)}
