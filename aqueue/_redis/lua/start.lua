-- Mark a delivered job as running, unless it already reached an end (cancelled, or finished by
-- an earlier delivery): then the worker acks the entry without running it.
-- KEYS: job record
-- ARGV: worker name
-- Returns the attempt number to run, or the final status to skip.
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return status
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if status == false then
  -- The record expired while the job waited: it still runs (at-least-once), from attempt 1.
  redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', now,
    'attempts', 1)
  return 1
end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', now)
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
