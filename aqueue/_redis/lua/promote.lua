-- Move due jobs (found by poll.lua) from the delayed set into their streams. Each member is
-- removed in the same step that adds its entry: whichever worker runs this first moves a job,
-- and no job is moved twice. A member that left the set meanwhile (another worker moved it, a
-- cancel) or is not due any more is left alone. A job with a priority level (FIELD.level) goes
-- back to its level's stream; its record, if it has one, says queued again, told only to the
-- job's followers (job.events()): a result waiter wakes only at the end.
-- A member that is no job's fields (written by another program, or by hand) goes to the dead
-- letters with the reason: left in place, it would stop every due job behind it.
-- Having moved any, it tells the delayed set's earliest due time now (ms, "" when none waits) on
-- the set's channel, as delay() tells an earlier one: the workers that do not lead then know
-- the leader is alive, and look only if a due time passes untold (see
-- aqueue/_worker/_reclaim.py). Each worker of the queue gets the message, so a caller that told
-- it lately asks for quiet: then the next job's promotion, due that soon, tells it instead.
-- Returns {ms until the next due job or -1 when none waits (as poll.lua returns it), 1 when it
--          told the earliest due time else 0}, or the error of the first write the server
--          refused (the members moved meanwhile are moved all the same).
local delayed = KEYS[1]
local levels = KEYS[2]
local dead = KEYS[3]
-- job ids scored by how many follow each (job.events())
local followed = KEYS[4]
local streams = 5  -- KEYS[5...]: streams
-- one per member, in order: the record of the job it names (for one that names none, any key)
local records = 15  -- KEYS[15...]: records
local dead_limit = ARGV[1]
-- tell nothing if the next job is due within this many ms (0: tell)
local quiet_ms = tonumber(ARGV[2])
local members = 3  -- ARGV[3...]: members
local now = now_ms()
-- The member's field/value list, or nil when it is no msgpack list of fields and values.
local function fields_of(member)
  local ok, fields = pcall(cmsgpack.unpack, member)
  if ok and type(fields) == 'table' and #fields > 0 and #fields % 2 == 0 then
    return fields
  end
end
-- Whether every field and value is a string or a number, as XADD takes them. Checked only for
-- a member whose move failed (a refusal, or a value XADD does not take): a check of each
-- member cost the server as much as the rest of its move.
local function flat(fields)
  for i = 1, #fields do
    local kind = type(fields[i])
    if kind ~= 'string' and kind ~= 'number' then
      return false
    end
  end
  return true
end
-- Whether someone follows the job: one look at the followed set for the call, since mostly
-- nobody follows any job of the queue.
local anyone_follows
local function follows(job)
  if anyone_follows == nil then
    anyone_follows = redis.call('EXISTS', followed) == 1
  end
  return anyone_follows and tonumber(redis.call('ZSCORE', followed, job) or 0) > 0
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
  -- Only a scheduled job's record holds due_at, so removing it finds the record to mark queued
  -- (one call where reading its status took another): nothing of a job that keeps no record
  -- or was cancelled, and no record is made again once it expired. The record is the one the
  -- worker read in the member (_reclaim.py), a key that never exists for one that names no
  -- job: checking it here again cost as much as the rest of the record's change.
  if redis.call('HDEL', record, 'due_at') == 1 then
    redis.call('HSET', record, 'status', 'queued')
    if follows(job) then
      tell(record, 'queued')
    end
  end
end
-- A member that is no job's fields.
local function dead_letter(member)
  redis.call('XADD', dead, 'MAXLEN', '~', dead_limit, '*', 'reason',
    'a member of the delayed set is no job (not a msgpack list of fields and values)',
    'dead_at', now, 'member', member)
end
-- One look at the due members and one removal for the call, not one of each per member: a
-- redis.call costs about as much as the rest of a member's move. The look reads as many as
-- the call has, which are the first due unless some came due before them since the worker
-- looked: those left out stay for the next look. (Their scores, which ZMSCORE gave, came as
-- strings Lua read one by one.) Each member is moved in a pcall and removed only once moved:
-- a write the server refuses leaves that member (and its job) in the set for the next look,
-- and the others go on.
local due, read = {}, redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0,
  #ARGV - members + 1)
for _, member in ipairs(read) do
  due[member] = true
end
local moved, refused = {}, nil
for i = members, #ARGV do
  local member = ARGV[i]
  if due[member] then
    due[member] = nil  -- a member given twice moves once
    local fields = fields_of(member)
    local ok, err = false, nil
    if fields then
      ok, err = pcall(promote, fields, KEYS[records + i - members])
    end
    if not ok and not (fields and flat(fields)) then
      ok, err = pcall(dead_letter, member)
    end
    if ok then
      moved[#moved + 1] = member
    else
      refused = refused or err
    end
  end
end
if #moved == #read and #read > 0 then
  -- Every member read was moved: they are the set's first, removed by their ranks with no
  -- member to take in again (nothing else in this call changes the set).
  redis.call('ZREMRANGEBYRANK', delayed, 0, #read - 1)
elseif #moved > 0 then
  redis.call('ZREM', delayed, unpack(moved))
end
if refused then
  -- redis.call raises a table ({err = ...}); Lua itself raises a string.
  return {err = type(refused) == 'table' and refused.err or tostring(refused)}
end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local wait = #first > 0 and math.max(0, tonumber(first[2]) - now) or -1
if #moved > 0 and (wait < 0 or wait >= quiet_ms) then
  redis.pcall('SPUBLISH', delayed, first[2] or '')
  return {wait, 1}
end
return {wait, 0}
