#!lua flags=allow-oom
-- A worker says it is alive, on the server's clock, and forgets workers silent for long.
-- allow-oom (the shebang line must come first): a live worker stays listed at maxmemory
-- under noeviction; its member exists already, so the ZADD only changes its score.
local workers = KEYS[1]
local worker = ARGV[1]
-- "" to only remove this worker
local forget_after = ARGV[2]
if forget_after == '' then
  return redis.call('ZREM', workers, worker)
end
local now = now_ms()
redis.call('ZADD', workers, now, worker)
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - tonumber(forget_after))
return now
