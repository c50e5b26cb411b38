-- A worker's entry in the app's registry: its record, kept for one lease, and its name in the
-- index that `app.workers()` reads. Names whose worker stopped beating long ago are pruned here,
-- by the beats of the live ones, so the index stays as small as the fleet.
-- KEYS: registry index (sorted set of worker names by last beat), the worker's record
-- ARGV: worker name, record (JSON), record ttl in ms ("" to deregister), forget-after in ms
if ARGV[3] == '' then
  redis.call('DEL', KEYS[2])
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[4]))
return now
