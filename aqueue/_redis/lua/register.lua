#!lua flags=allow-oom
-- allow-oom (the shebang line must come first): a live worker stays listed at maxmemory under
-- noeviction; its record and its name in the index exist already, so they only change.
-- A worker's entry in the app's registry: its record, kept for one lease, and its name in the
-- index that `app.workers()` reads. Names whose worker stopped beating long ago are pruned here,
-- by the beats of the live ones, so the index stays as small as the fleet.
local index = KEYS[1]
local record = KEYS[2]
local name = ARGV[1]
local worker = ARGV[2]
-- ms; "" to deregister
local ttl_ms = ARGV[3]
local forget_after = ARGV[4]
if ttl_ms == '' then
  redis.call('DEL', record)
  return redis.call('ZREM', index, name)
end
local now = now_ms()
redis.call('SET', record, worker, 'PX', ttl_ms)
redis.call('ZADD', index, now, name)
redis.call('ZREMRANGEBYSCORE', index, '-inf', now - tonumber(forget_after))
return now
