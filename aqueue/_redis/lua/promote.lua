-- Move due jobs from the delayed set into the stream, on the server's clock, so a worker with
-- a skewed clock cannot fire work early. Each member is removed in the same step that adds its
-- entry: whichever worker runs this first moves a job, and no job is moved twice.
-- A job with a priority level ("l" field) goes back to its level's stream.
-- Workers call this every few milliseconds, so it also tells them how many priority levels
-- are in use (they notice a new level without a read of their own) and which running jobs
-- were cancelled since they last looked (the cancel script writes that set), and whether the
-- queue is paused (they stop or start reading it within one call's interval, no read of
-- their own).
-- A member that is no job's fields (written by another program, or by hand) goes to the dead
-- letters with the reason: left in place, it would stop every due job behind it.
-- KEYS: delayed set, stream, priority levels set, cancelled set, dead-letter stream, paused flag
-- ARGV: queue key prefix (for job records, which share the queue's hash tag), most to move,
--       cancel-time cursor in ms from the previous call (0 on the first: the last hour),
--       dead-letter stream max length
-- Returns {moved, ms until the next due job or -1 when none waits, levels in use besides the
--          default, next cursor, 1 when the queue is paused else 0,
--          ids of jobs cancelled since the cursor...}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
-- The member's field/value list, or nil when it is none.
local function fields_of(member)
  local ok, fields = pcall(cmsgpack.unpack, member)
  if not ok or type(fields) ~= 'table' or #fields == 0 or #fields % 2 == 1 then
    return nil
  end
  for _, value in ipairs(fields) do
    if type(value) ~= 'string' and type(value) ~= 'number' then
      return nil
    end
  end
  return fields
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
-- Move one due job's entry into its stream (and its record's status to queued).
local function promote(fields)
  local stream = KEYS[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'j' then
      local record = ARGV[1] .. ':job:' .. (string.match(fields[i + 1], ':(.*)$') or '')
      if redis.call('HGET', record, 'status') == 'scheduled' then
        redis.call('HSET', record, 'status', 'queued')
        redis.call('HDEL', record, 'due_at')
        redis.pcall('PUBLISH', record, 'queued')
      end
    elseif fields[i] == 'l' and string.match(fields[i + 1], '^[0-46-9]$') then
      -- Any level but 5, the default, whose stream is the queue's own.
      stream = KEYS[2] .. ':' .. fields[i + 1]
      redis.call('SADD', KEYS[3], fields[i + 1])
    end
  end
  redis.call('XADD', stream, '*', unpack(fields))
end
for _, member in ipairs(due) do
  local fields = fields_of(member)
  if fields then
    promote(fields)
  else
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 'reason',
      'a member of the delayed set is no job (not a msgpack list of fields and values)',
      'dead_at', now, 'member', member)
  end
  redis.call('ZREM', KEYS[1], member)
end
local levels = redis.call('SCARD', KEYS[3])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #first > 0 then
  wait = math.max(0, tonumber(first[2]) - now)
end
local reply = {#due, wait, levels}
local cursor = tonumber(ARGV[3])
if cursor == 0 then
  -- A worker's first look goes back as far as the cancel script keeps ids (an hour): its
  -- fetcher may have started a job cancelled a moment before, and a fire-and-forget job
  -- cancelled before this worker started must not start on it.
  cursor = now - 3600000
end
-- Inclusive, and the next look starts from this script's own time: a cancel later in this same
-- ms is not missed, and what was read is not read again (beyond that one ms).
local cancelled = redis.call('ZRANGEBYSCORE', KEYS[4], cursor, '+inf', 'WITHSCORES', 'LIMIT', 0, 10000)
reply[4] = now
reply[5] = redis.call('EXISTS', KEYS[6])
for i = 1, #cancelled, 2 do
  reply[#reply + 1] = cancelled[i]
end
if #cancelled == 20000 then
  -- A full page: go on from its last score (or past it, if the whole page shares one ms).
  local last = tonumber(cancelled[#cancelled])
  reply[4] = last > cursor and last or cursor + 1
end
return reply
