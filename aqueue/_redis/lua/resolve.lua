-- One dependency of a waiting job ended: count it. Idempotent (a set, not a counter), so a
-- redelivered or retried dependency that reports again changes nothing.
-- Returns {"gone", status}: already enqueued or finished (or expired);
--         {"wait"}: other dependencies are still pending;
--         {"fail", wait hash}: a dependency failed and failures are not passed on;
--         {"ready", wait hash}: every dependency ended, release it (unblock.lua).
local record = KEYS[1]
local wait = KEYS[2]
local pending = KEYS[3]
local dependency = ARGV[1]
local dependency_status = ARGV[2]
if redis.call('EXISTS', wait) == 0 then
  return {'gone', redis.call('HGET', record, 'status') or ''}
end
if dependency_status ~= 'succeeded' and redis.call('HGET', wait, 'lenient') ~= '1' then
  return {'fail', redis.call('HGETALL', wait)}
end
redis.call('SREM', pending, dependency)
if redis.call('SCARD', pending) > 0 then
  return {'wait'}
end
return {'ready', redis.call('HGETALL', wait)}
