-- Move due jobs (found by poll.lua) from the delayed set into their streams. Each member is
-- removed in the same step that adds its entry: whichever worker runs this first moves a job,
-- and no job is moved twice. A member that left the set meanwhile (another worker moved it, a
-- cancel) or is not due any more is left alone. A job with a priority level (FIELD.level) goes
-- back to its level's stream; its record, if it has one, says queued again.
-- A member that is no job's fields (written by another program, or by hand) goes to the dead
-- letters with the reason: left in place, it would stop every due job behind it.
-- Having moved any, it tells the delayed set's earliest due time now (ms, "" when none waits) on
-- the set's channel, as delay() tells an earlier one: the workers that do not lead then know
-- the leader is alive, and look only if a due time passes untold (see
-- aqueue/_worker/_reclaim.py). Each worker of the queue gets the message, so a caller that told
-- it lately asks for quiet: then the next job's promotion, due that soon, tells it instead.
-- Returns {ms until the next due job or -1 when none waits (as poll.lua returns it), 1 when it
--          told the earliest due time else 0}.
local delayed = KEYS[1]
local levels = KEYS[2]
local dead = KEYS[3]
local streams = 4  -- KEYS[4...]: streams
-- one per member, in order: the record of the job it names (for one that names none, any key)
local records = 14  -- KEYS[14...]: records
local dead_limit = ARGV[1]
-- tell nothing if the next job is due within this many ms (0: tell)
local quiet_ms = tonumber(ARGV[2])
local members = 3  -- ARGV[3...]: members
local now = now_ms()
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
local function promote(fields, record)
  local level, job = nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == FIELD.job_id then
      job = fields[i + 1]
    elseif fields[i] == FIELD.level then
      level = fields[i + 1]
    end
  end
  local stream, own = level_stream(streams, level)
  if own then
    add_level(levels, level)
  end
  redis.call('XADD', stream, '*', unpack(fields))
  -- The record named for this member is the job's own: its id's hex part ends both.
  local hex = job and string.match(job, ':(.*)$')
  if hex and string.match(record, ':job:(.*)$') == hex
      and redis.call('HGET', record, 'status') == 'scheduled' then
    redis.call('HSET', record, 'status', 'queued')
    redis.call('HDEL', record, 'due_at')
    tell(record, 'queued')
  end
end
local moved = false
for i = members, #ARGV do
  local member = ARGV[i]
  local score = redis.call('ZSCORE', delayed, member)
  if score and tonumber(score) <= now then
    local fields = fields_of(member)
    if fields then
      promote(fields, KEYS[records + i - members])
    else
      redis.call('XADD', dead, 'MAXLEN', '~', dead_limit, '*', 'reason',
        'a member of the delayed set is no job (not a msgpack list of fields and values)',
        'dead_at', now, 'member', member)
    end
    redis.call('ZREM', delayed, member)
    moved = true
  end
end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local wait = #first > 0 and math.max(0, tonumber(first[2]) - now) or -1
if moved and (wait < 0 or wait >= quiet_ms) then
  redis.pcall('SPUBLISH', delayed, first[2] or '')
  return {wait, 1}
end
return {wait, 0}
