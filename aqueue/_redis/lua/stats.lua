-- Counts for one queue, read in one step so they agree with each other.
-- Returns {queued, scheduled, running, dead, workers, queued at the default level,
--          then a level and its queued count for each other level in use}.
local dead = KEYS[1]
local workers = KEYS[2]
local delayed = KEYS[3]
local levels = KEYS[4]
local streams = 5  -- KEYS[5...]: streams
local group = ARGV[1]
-- a worker silent for longer is not counted
local lease_ms = tonumber(ARGV[2])
local function counts(stream)
  local length = redis.call('XLEN', stream)
  local running = 0
  local summary = redis.pcall('XPENDING', stream, group)
  if type(summary) == 'table' and not summary.err then
    running = summary[1]
  end
  return length - running, running
end
local queued, running = counts(level_stream(streams))
local default_queued = queued
local in_use = {}
for _, level in ipairs(redis.call('SMEMBERS', levels)) do
  local stream, own = level_stream(streams, level)
  if own then
    local waiting, taken = counts(stream)
    in_use[#in_use + 1] = level
    in_use[#in_use + 1] = waiting
    queued = queued + waiting
    running = running + taken
  end
end
local workers_alive = redis.call('ZCOUNT', workers, now_ms() - lease_ms, '+inf')
return {queued, redis.call('ZCARD', delayed), running, redis.call('XLEN', dead), workers_alive,
  default_queued, unpack(in_use)}
