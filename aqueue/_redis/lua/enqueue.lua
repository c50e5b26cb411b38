-- Add one job: the stream entry and its record together, so no reader ever sees a job
-- without a record (status would say "unknown") or a record without a job (it would wait forever).
-- KEYS: stream, job record
-- ARGV: job id, task name, payload, result ttl, options ("" for none),
--       record ttl in seconds while unfinished (0: fire and forget, no record)
local entry
if ARGV[5] == '' then
  entry = redis.call('XADD', KEYS[1], '*', 'j', ARGV[1], 't', ARGV[2], 'p', ARGV[3], 'r', ARGV[4])
else
  entry = redis.call('XADD', KEYS[1], '*', 'j', ARGV[1], 't', ARGV[2], 'p', ARGV[3], 'r', ARGV[4],
    'o', ARGV[5])
end
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  -- The entry id starts with the server's clock in ms: one clock for every producer.
  local enqueued_at = string.match(entry, '^(%d+)')
  redis.call('HSET', KEYS[2], 'status', 'queued', 'task', ARGV[2], 'enqueued_at', enqueued_at,
    'attempts', 0)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return entry
