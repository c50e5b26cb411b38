-- Move due jobs from the delayed set into the stream, on the server's clock, so a worker with
-- a skewed clock cannot fire work early. Each member is removed in the same step that adds its
-- entry: whichever worker runs this first moves a job, and no job is moved twice.
-- Workers call this every few milliseconds, so it also tells them which running jobs were
-- cancelled since they last looked (the cancel script writes that set).
-- KEYS: delayed set, stream, cancelled set
-- ARGV: queue key prefix (for job records, which share the queue's hash tag), most to move,
--       cancel-time cursor in ms from the previous call (0 on the first: start from now)
-- Returns {moved, ms until the next due job or -1 when none waits, next cursor,
--          ids of jobs cancelled since the cursor...}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local fields = cmsgpack.unpack(member)
  redis.call('XADD', KEYS[2], '*', unpack(fields))
  redis.call('ZREM', KEYS[1], member)
  for i = 1, #fields, 2 do
    if fields[i] == 'j' then
      local record = ARGV[1] .. ':job:' .. (string.match(fields[i + 1], ':(.*)$') or '')
      if redis.call('HGET', record, 'status') == 'scheduled' then
        redis.call('HSET', record, 'status', 'queued')
        redis.call('HDEL', record, 'due_at')
        redis.pcall('PUBLISH', record, 'queued')
      end
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #first > 0 then
  wait = math.max(0, tonumber(first[2]) - now)
end
local reply = {#due, wait}
local cursor = tonumber(ARGV[3])
if cursor == 0 then
  reply[3] = now
  return reply
end
-- Inclusive: a cancel in the same ms as the cursor is not missed (seeing one twice is harmless).
local cancelled = redis.call('ZRANGEBYSCORE', KEYS[3], cursor, '+inf', 'WITHSCORES', 'LIMIT', 0, 10000)
reply[3] = cursor
for i = 1, #cancelled, 2 do
  reply[#reply + 1] = cancelled[i]
  reply[3] = math.max(reply[3], tonumber(cancelled[i + 1]))
end
if #cancelled == 20000 and reply[3] == cursor then
  -- A full page within one ms: move on rather than read the same page forever.
  reply[3] = cursor + 1
end
return reply
