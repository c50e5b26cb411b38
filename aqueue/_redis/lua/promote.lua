-- Move due jobs from the delayed set into the stream, on the server's clock, so a worker with
-- a skewed clock cannot fire work early. Each member is removed in the same step that adds its
-- entry: whichever worker runs this first moves a job, and no job is moved twice.
-- A job with a priority level ("l" field) goes back to its level's stream.
-- KEYS: delayed set, stream, priority levels set
-- ARGV: queue key prefix (for job records, which share the queue's hash tag), most to move
-- Returns {moved, ms until the next due job or -1 when none waits, levels in use besides the
-- default (so workers notice a new level without a read of their own)}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local fields = cmsgpack.unpack(member)
  local stream = KEYS[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'j' then
      local record = ARGV[1] .. ':job:' .. (string.match(fields[i + 1], ':(.*)$') or '')
      if redis.call('HGET', record, 'status') == 'scheduled' then
        redis.call('HSET', record, 'status', 'queued')
        redis.call('HDEL', record, 'due_at')
      end
    elseif fields[i] == 'l' and string.match(fields[i + 1], '^[0-46-9]$') then
      -- Any level but 5, the default, whose stream is the queue's own.
      stream = KEYS[2] .. ':' .. fields[i + 1]
      redis.call('SADD', KEYS[3], fields[i + 1])
    end
  end
  redis.call('XADD', stream, '*', unpack(fields))
  redis.call('ZREM', KEYS[1], member)
end
local levels = redis.call('SCARD', KEYS[3])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  return {#due, -1, levels}
end
return {#due, math.max(0, tonumber(first[2]) - now), levels}
