-- Begin one delivery: count it as an attempt and mark the job running, unless it must not run.
-- Every delivery counts, crashes included, so a message that kills its worker each time ends
-- in the dead-letter stream instead of killing workers forever.
-- KEYS: job record, stream
-- ARGV: worker name, entry id, group, most attempts allowed, keeps a record ("1" or "0"),
--       attempts made before this entry was written (its "a" field, for retries),
--       epoch ms after which the job must not start (its "x" field; 0: none)
-- Returns the attempt number to run, or a reason not to run it:
--   succeeded/failed/cancelled  the job already ended (acked without running)
--   lost                        the entry is no longer ours (another worker claimed it)
--   expired                     not started before its expiry (the worker records it cancelled)
--   poison                      delivered more often than allowed (dead-lettered)
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return status
end
local pending = redis.call('XPENDING', KEYS[2], ARGV[3], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[1] then
  return 'lost'
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expires = tonumber(ARGV[7])
if expires > 0 and now > expires then
  return 'expired'
end
local attempt
if status == false then
  -- No record (fire and forget, or it expired): the stream's own delivery count is all we have.
  attempt = tonumber(ARGV[6]) + pending[1][4]
else
  attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
if attempt > tonumber(ARGV[4]) then
  return 'poison'
end
if status ~= false or ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', now,
    'attempts', attempt)
  redis.pcall('PUBLISH', KEYS[1], 'running')
end
return attempt
