-- Counts for one queue, read in one step so they agree with each other.
-- KEYS: stream, dead-letter stream, workers sorted set, delayed set
-- ARGV: group, lease in ms (a worker silent for longer is not counted)
local length = redis.call('XLEN', KEYS[1])
local running = 0
local summary = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(summary) == 'table' and not summary.err then
  running = summary[1]
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local workers = redis.call('ZCOUNT', KEYS[3], now - tonumber(ARGV[2]), '+inf')
return {length - running, redis.call('ZCARD', KEYS[4]), running, redis.call('XLEN', KEYS[2]),
  workers}
