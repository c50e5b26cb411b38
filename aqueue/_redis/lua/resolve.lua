-- One dependency of a waiting job ended: count it. Idempotent (a set, not a counter), so a
-- redelivered or retried dependency that reports again changes nothing.
-- KEYS: waiting job's record, wait hash, pending set
-- ARGV: dependency id, its final status
-- Returns {"gone", status}: already enqueued or finished (or expired);
--         {"wait"}: other dependencies are still pending;
--         {"fail", wait hash}: a dependency failed and failures are not passed on;
--         {"ready", wait hash}: every dependency ended, release it (unblock.lua).
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {'gone', redis.call('HGET', KEYS[1], 'status') or ''}
end
if ARGV[2] ~= 'succeeded' and redis.call('HGET', KEYS[2], 'lenient') ~= '1' then
  return {'fail', redis.call('HGETALL', KEYS[2])}
end
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[3]) > 0 then
  return {'wait'}
end
return {'ready', redis.call('HGETALL', KEYS[2])}
