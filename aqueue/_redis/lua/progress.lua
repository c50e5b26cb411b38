-- Record a running job's progress and wake whoever follows the job's events. Only while the job
-- runs: a late write must not touch an ended job, nor bring back a record that expired or was
-- deleted (HSET would recreate it with no TTL).
-- KEYS: job record
-- ARGV: fraction, message
-- Returns 1 when written, 0 when the job no longer runs.
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'progress_message', ARGV[2])
redis.pcall('PUBLISH', KEYS[1], 'progress')
return 1
