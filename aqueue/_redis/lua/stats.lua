-- Counts for one queue, read in one step so they agree with each other.
-- KEYS: stream, dead-letter stream, workers sorted set, delayed set, priority levels set
-- ARGV: group, lease in ms (a worker silent for longer is not counted)
-- Returns {queued, scheduled, running, dead, workers, queued at the default level,
--          then a level and its queued count for each other level in use}.
local function counts(stream)
  local length = redis.call('XLEN', stream)
  local running = 0
  local summary = redis.pcall('XPENDING', stream, ARGV[1])
  if type(summary) == 'table' and not summary.err then
    running = summary[1]
  end
  return length - running, running
end
local queued, running = counts(KEYS[1])
local default_queued = queued
local levels = {}
for _, level in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  local waiting, taken = counts(KEYS[1] .. ':' .. level)
  levels[#levels + 1] = level
  levels[#levels + 1] = waiting
  queued = queued + waiting
  running = running + taken
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local workers = redis.call('ZCOUNT', KEYS[3], now - tonumber(ARGV[2]), '+inf')
return {queued, redis.call('ZCARD', KEYS[4]), running, redis.call('XLEN', KEYS[2]), workers,
  default_queued, unpack(levels)}
