-- Record a running job's progress and wake whoever follows the job's events. Only while the job
-- runs: a late write must not touch an ended job, nor bring back a record that expired or was
-- deleted (HSET would recreate it with no TTL).
-- Returns 1 when written, 0 when the job no longer runs.
local record = KEYS[1]
local fraction = ARGV[1]
local message = ARGV[2]
if redis.call('HGET', record, 'status') ~= 'running' then
  return 0
end
redis.call('HSET', record, 'progress', fraction, 'progress_message', message)
tell(record, 'progress')
return 1
