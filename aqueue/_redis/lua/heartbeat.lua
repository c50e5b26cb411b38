#!lua flags=allow-oom
-- A worker says it is alive, on the server's clock, and forgets workers silent for long.
-- allow-oom (the shebang line must come first): a live worker stays listed at maxmemory
-- under noeviction; its member exists already, so the ZADD only changes its score.
-- KEYS: workers sorted set of one queue
-- ARGV: worker name, forget-after in ms ("" to only remove this worker)
if ARGV[2] == '' then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return now
