-- A worker's look at one of its queues, in one call: it moves the jobs of the delayed set that
-- are due (on the server's clock, so a worker with a skewed clock cannot fire work early) into
-- their streams, and tells when the next one is due, how many priority levels are in use, which
-- running jobs were cancelled since it last looked (the cancel script writes that set), whether
-- the queue is paused, and who leads the queue's housekeeping.
-- The leader (one worker per queue at a time) moves due jobs and claims lapsed entries; it
-- looks when the next job is due, and each look renews its leadership (as lead.lua does in
-- between). The others look only now and then: changes reach them on pub/sub (see
-- _prelude.lua), and a look reads what they missed while not listening, moves the jobs a
-- silent leader left due (a grace after their due time, when no move was told: see below),
-- and takes the leadership over once the leader's lapsed.
-- Moving a job writes nothing to its record, which still says `scheduled` with its due_at: a
-- scheduled job whose member has left the delayed set is queued, and whoever reads a status
-- reads it so (Job._read with moved.lua, purge.lua; start.lua marks it running). Marking the
-- record queued at the move took two commands on a key last touched 50 ms or more before (a
-- retry's), and the record's key in the call; and without records, the moves need no second
-- call with the members the look found: the two cost the server 6% of a retry's instructions.
-- Returns {due members read (as many as `batch`: more may be due), ms until the next due job
-- or -1 when none waits, levels in use besides the default, next cursor, 1 when the queue is
-- paused else 0, 1 when this worker leads the queue else 0, ms the current leadership has
-- left, the server's time in ms (the delayed channel's notices give due times on its clock),
-- 1 when it told the earliest due time else 0, the error of the first move the server refused
-- ("" when none: the members moved meanwhile are moved all the same), {ids of the moved jobs
-- that someone follows}, ids of jobs cancelled since the cursor...}.
local delayed = KEYS[1]
local levels = KEYS[2]
local cancelled = KEYS[3]
local paused = KEYS[4]
-- the name of the worker that leads the queue's housekeeping, expiring unless renewed
local leader = KEYS[5]
local dead = KEYS[6]
-- job ids scored by how many follow each (job.events())
local followed = KEYS[7]
local streams = 8  -- KEYS[8...]: streams
-- most due members to move
local batch = tonumber(ARGV[1])
-- cancel time in ms from the previous call (0 on the first: the last hour)
local cursor = tonumber(ARGV[2])
-- this worker's name
local worker = ARGV[3]
-- ms a leadership lasts unless renewed; 0: look only, never lead (a worker that stops)
local lead_ms = tonumber(ARGV[4])
local dead_limit = ARGV[5]
-- tell nothing if the next job is due within this many ms (0: tell)
local quiet_ms = tonumber(ARGV[6])
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
-- nobody follows any job of the queue. The worker tells those (on their records' channels,
-- keys this call does not hold) that they are queued: a result waiter wakes only at the end.
local anyone_follows
local told_followers = {}
local function move(fields)
  local level, job = nil, nil
  for i = 1, #fields, 2 do
    if fields[i] == FIELD.job_id then
      job = fields[i + 1]
    elseif fields[i] == FIELD.level then
      level = fields[i + 1]
    end
  end
  add_entry(streams, levels, level, fields)
  if anyone_follows == nil then
    anyone_follows = redis.call('EXISTS', followed) == 1
  end
  if anyone_follows and job and tonumber(redis.call('ZSCORE', followed, job) or 0) > 0 then
    told_followers[#told_followers + 1] = job
  end
end
-- A member that is no job's fields goes to the dead letters with the reason: left in place, it
-- would stop every due job behind it.
local function dead_letter(member)
  redis.call('XADD', dead, 'MAXLEN', '~', dead_limit, '*', 'reason',
    'a member of the delayed set is no job (not a msgpack list of fields and values)',
    'dead_at', now, 'member', member)
end
-- Each member is removed in the same step that adds its entry: whichever worker looks first
-- moves a job, and no job is moved twice. Each is moved in a pcall and removed only once moved:
-- a write the server refuses leaves that member (and its job) in the set for the next look,
-- and the others go on. One removal for the call, not one per member: a redis.call costs about
-- as much as the rest of a member's move.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, batch)
local moved, refused = {}, nil
for _, member in ipairs(due) do
  local fields = fields_of(member)
  local ok, err = false, nil
  if fields then
    ok, err = pcall(move, fields)
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
if #moved == #due and #due > 0 then
  -- Every member read was moved: they are the set's first, removed by their ranks with no
  -- member to take in again (nothing else in this call changes the set).
  redis.call('ZREMRANGEBYRANK', delayed, 0, #due - 1)
elseif #moved > 0 then
  redis.call('ZREM', delayed, unpack(moved))
end
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local wait = -1
if #first > 0 then
  wait = math.max(0, tonumber(first[2]) - now)
end
-- Having moved any, it tells the delayed set's earliest due time now (ms, "" when none waits)
-- on the set's channel, as delay() tells an earlier one: the workers that do not lead then
-- know the leader is alive, and look only if a due time passes untold (see
-- aqueue/_worker/_reclaim.py). Each worker of the queue gets the message, so a caller that
-- told it lately asks for quiet: then the next job's move, due that soon, tells it instead.
local told = 0
if #moved > 0 and (wait < 0 or wait >= quiet_ms) then
  redis.pcall('SPUBLISH', delayed, first[2] or '')
  told = 1
end
if cursor == 0 then
  -- A worker's first look goes back as far as the cancel script keeps ids (an hour): its
  -- fetcher may have started a job cancelled a moment before, and a fire-and-forget job
  -- cancelled before this worker started must not start on it.
  cursor = now - 3600000
end
-- Inclusive, and the next look starts from this script's own time: a cancel later in this same
-- ms is not missed, and what was read is not read again (beyond that one ms).
local ids = redis.call('ZRANGEBYSCORE', cancelled, cursor, '+inf', 'WITHSCORES', 'LIMIT', 0, 10000)
-- Taken when nobody holds it (the leader resigned, or went silent for lead_ms), else renewed
-- by its holder.
local holder = redis.call('GET', leader)
local leads, left = 0, lead_ms
if lead_ms > 0 and holder == worker then
  -- PEXPIRE needs no memory: a leader keeps leading (and claiming) at maxmemory.
  redis.call('PEXPIRE', leader, lead_ms)
  leads = 1
elseif lead_ms > 0 and not holder then
  -- Taking it writes a key, which a server at maxmemory refuses: then this look is a
  -- follower's, and the rest of it (due jobs, cancels) is still answered.
  local taken = redis.pcall('SET', leader, worker, 'PX', lead_ms)
  leads = type(taken) == 'table' and taken.ok and 1 or 0
  left = leads == 1 and lead_ms or 0
else
  left = redis.call('PTTL', leader)
end
-- redis.call raises a table ({err = ...}); Lua itself raises a string.
refused = refused and (type(refused) == 'table' and refused.err or tostring(refused)) or ''
local reply = {#due, wait, redis.call('SCARD', levels), now, redis.call('EXISTS', paused), leads,
  left, now, told, refused, told_followers}
for i = 1, #ids, 2 do
  reply[#reply + 1] = ids[i]
end
if #ids == 20000 then
  -- A full page: go on from its last score (or past it, if the whole page shares one ms).
  local last = tonumber(ids[#ids])
  reply[4] = last > cursor and last or cursor + 1
end
return reply
