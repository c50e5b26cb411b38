-- Add one job: its entry (in the stream, or in the delayed set when it is due later) and its
-- record together, so no reader ever sees a job without a record (status would say "unknown")
-- or a record without a job (it would wait forever).
-- With a uniqueness key, the job is added only if no job holds the key; the holder is
-- returned instead. Check and claim are one step, so racing producers add one job.
-- KEYS: stream (of the job's priority level), job record, delayed set, uniqueness key,
--       priority levels set, the queue's own stream (of the default level)
-- ARGV: job id, task name, payload, result ttl, options ("" for none),
--       record ttl in seconds while unfinished (0: fire and forget, no record),
--       delay in ms from the server's now (0: none), due time in epoch ms (0: none),
--       most jobs the queue may hold (0: no limit),
--       seconds to keep the key after the job ended ("" when the job has no key),
--       expiry in ms from the server's now and expiry in epoch ms (0: none; a job not
--       started by then is cancelled instead of running late),
--       priority level ("" for the default level)
-- Returns {entry id ("" when delayed or not added), id of the job holding the key or ""}.
if ARGV[10] ~= '' then
  local holder = redis.call('GET', KEYS[4])
  if holder then
    return {'', holder}
  end
end
local limit = tonumber(ARGV[9])
if limit > 0 then
  -- The limit counts every priority level's stream.
  local held = redis.call('XLEN', KEYS[6]) + redis.call('ZCARD', KEYS[3])
  for _, level in ipairs(redis.call('SMEMBERS', KEYS[5])) do
    held = held + redis.call('XLEN', KEYS[6] .. ':' .. level)
  end
  if held >= limit then
    -- Backpressure: refuse before anything is written, rather than let Redis run out of memory.
    return redis.error_reply('QUEUEFULL the queue holds its limit of ' .. limit .. ' jobs')
  end
end
local fields = {'j', ARGV[1], 't', ARGV[2], 'p', ARGV[3], 'r', ARGV[4]}
if ARGV[5] ~= '' then
  fields[#fields + 1] = 'o'
  fields[#fields + 1] = ARGV[5]
end
if ARGV[10] ~= '' then
  -- The worker releases the key (or keeps it for the key ttl) when the job ends.
  fields[#fields + 1] = 'u'
  fields[#fields + 1] = KEYS[4]
  fields[#fields + 1] = 'k'
  fields[#fields + 1] = ARGV[10]
end
if ARGV[13] ~= '' then
  -- The level travels with the entry, so a retry, a delay or a replay comes back to it;
  -- the set tells workers which streams to read.
  fields[#fields + 1] = 'l'
  fields[#fields + 1] = ARGV[13]
  redis.call('SADD', KEYS[5], ARGV[13])
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expires = tonumber(ARGV[12])
if tonumber(ARGV[11]) > 0 then
  expires = now + tonumber(ARGV[11])
end
if expires > 0 then
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = expires
end
-- Due-ness is decided on the server's clock: a producer's skewed clock cannot move a delay.
local due = 0
if tonumber(ARGV[7]) > 0 then
  due = now + tonumber(ARGV[7])
elseif tonumber(ARGV[8]) > now then
  due = tonumber(ARGV[8])
end
local entry = ''
if due > 0 then
  redis.call('ZADD', KEYS[3], due, cmsgpack.pack(fields))
else
  entry = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  if due > 0 then
    -- Kept at least until a while after it is due.
    ttl = ttl + math.ceil((due - now) / 1000)
    redis.call('HSET', KEYS[2], 'status', 'scheduled', 'task', ARGV[2], 'enqueued_at', now,
      'due_at', due, 'attempts', 0)
  else
    redis.call('HSET', KEYS[2], 'status', 'queued', 'task', ARGV[2], 'enqueued_at', now,
      'attempts', 0)
  end
  if ARGV[10] ~= '' then
    -- So that cancelling the job can free its key.
    redis.call('HSET', KEYS[2], 'unique', KEYS[4])
  end
  redis.call('EXPIRE', KEYS[2], ttl)
end
if ARGV[10] ~= '' then
  -- Held while the job waits or runs; bounded, so a lost job cannot hold it forever.
  local hold = math.max(tonumber(ARGV[6]), 7 * 24 * 3600) + math.ceil(math.max(due - now, 0) / 1000)
  redis.call('SET', KEYS[4], ARGV[1], 'EX', hold)
end
return {entry, ''}
