-- Begin a batch of one stream's deliveries: count each as an attempt and mark its job
-- running, unless it must not run.
-- Every delivery counts, crashes included, so a message that kills its worker each time ends
-- in the dead-letter stream instead of killing workers forever.
-- One call per batch, not per delivery: a script call's own cost (its argument tables, the
-- prelude, its garbage) was most of what starting a job cost the server. The jobs of one call
-- share the task limits they take (a call holds the jobs of one task with limits, or jobs
-- without), and the server's clock.
-- Returns per job, in order, the attempt number to run, or a reason not to run it:
--   succeeded/failed/cancelled  the job already ended (acked without running)
--   lost                        the entry is no longer ours (another worker claimed it)
--   expired                     not started before its expiry (the worker records it cancelled)
--   poison                      delivered more often than allowed (dead-lettered)
--   deferred/parked             held back by a rate/concurrency limit (moved to the delayed set)
--   paused                      the queue is paused: every job of the call, left as it was
-- or an error reply when the server refused one of its writes (started again later).
local stream = KEYS[1]
local events = KEYS[2]
local delayed = KEYS[3]
-- job ids scored by how many follow each (job.events())
local followed = KEYS[4]
-- set while the queue is paused (Queue.pause)
local paused = KEYS[5]
-- Limits (see aqueue/_limits.py): with none (interval_us "" and most ""), the stream stands
-- in for their keys, never touched.
local rate_tat = KEYS[6]
local rate_reserved = KEYS[7]
local holders = KEYS[8]
local parked_line = KEYS[9]
local holder_streams = 10  -- KEYS[10...]: holder_streams
local job_keys = 20  -- KEYS[20...]: jobs
local consumer = ARGV[1]
local group = ARGV[2]
-- a number: emit() would convert a string for each job
local events_limit = tonumber(ARGV[3])
local interval_us = ARGV[4]
local most = tonumber(ARGV[5])
local lease = tonumber(ARGV[6])
local job_args = 7  -- ARGV[7...]: jobs (then the least and the greatest of their entry ids)
-- Per job, KEYS: its record, its "queued" hash; ARGV: its entry id, its id, and its spec (what
-- the jobs of one task mostly share; see spec_of). A value per job costs the server about a
-- fifth of a redis.call (the call's tables take it in as a Lua string).
local KEYS_PER_JOB, ARGS_PER_JOB = 2, 3
local specs = {}
-- A spec is "<most attempts> <keeps record> <queued first> <prior attempts> <not after>
-- <record ttl> <task>": the most attempts the job may make, "1" when it keeps a record (else
-- "0"), "1" when its status may be a field of its "queued" hash (enqueued to run at once, with
-- a record and no key: see _prelude.lua), the attempts made before its entry was written, the
-- epoch ms after which it must not start (0: never), its record's ttl while unfinished, then
-- its task ("" when the entry names none; it may hold spaces). Parsed once per call, however
-- many jobs share it.
local function spec_of(text)
  local spec = specs[text]
  if not spec then
    local most_attempts, keeps_record, queued_first, prior_attempts, expires_at, record_ttl,
      task = string.match(text, '^(%d+) (%d) (%d) (%d+) (%d+) (%d+) (.*)$')
    spec = {most_attempts = tonumber(most_attempts), keeps_record = keeps_record == '1',
      queued_first = queued_first == '1', prior_attempts = tonumber(prior_attempts),
      expires_at = tonumber(expires_at), record_ttl = tonumber(record_ttl),
      record_ttl_text = record_ttl,
      task = task ~= '' and task or nil}
    specs[text] = spec
  end
  return spec
end
local limited = interval_us ~= '' or most ~= nil
-- now_text: now as the records keep it. A number passed to redis.call is formatted anew each
-- time (a printf), so what every job of the batch writes is formatted once.
local now_us, now, now_text
local function clock()
  if not now then
    local t = redis.call('TIME')
    now_us = t[1] * 1000000 + t[2]
    now = math.floor(now_us / 1000)
    now_text = string.format('%d', now)
  end
end

local count = (#KEYS - job_keys + 1) / KEYS_PER_JOB

-- A read in flight when the queue was paused may still have returned its entries after the
-- pause (a worker learns of it on pub/sub, a moment later): none of them starts, nor counts an
-- attempt. The worker hands them back to the queue, to wait there for the resume.
if redis.call('EXISTS', paused) == 1 then
  local replies = {}
  for i = 1, count do
    replies[i] = 'paused'
  end
  return replies
end

-- Fencing, for the whole batch in one look.
local ours = owned_rows(stream, group, ARGV[#ARGV - 1], ARGV[#ARGV], consumer, 1000000)

-- Only a job someone follows is told it runs: a result waiter wakes only at the end.
local followed_jobs = followed_among(followed, count, function(i)
  return ARGV[job_args + (i - 1) * ARGS_PER_JOB + 1]
end)

-- The job's status: its record's, or "queued" (with `waiting`, its place in the "queued" hash)
-- when it has no record yet; with a record, the attempts it counts (read with the status: a
-- look of its own cost as much). A job delivered before, or counted by a retry, has a record.
-- A job that may be waiting in its "queued" hash is looked for there first, by removing its
-- field: whatever makes its record removes the field in the same step, so a field found means
-- no record, and every way out of start_one makes the record of a job found there (a refused
-- write aside: at maxmemory the first write decides, and this one went through). One call
-- where reading the field, and removing it when the record is made, took two. The field names
-- the entry it waits as (enqueue.lua, or requeue.lua for its copy): the one started here.
-- (The field is the job id's part after its first colon, as its record key ends, and the
-- enqueue time the entry id's ms: found with string.find and string.sub, which cost half what
-- a pattern with a capture does.)
local numbers = memo(tonumber)
local digits = memo(function(n)
  return string.format('%d', n)
end)
local function status_of(record, queued, entry_id, job_id, spec, pending)
  local looked = spec.queued_first and spec.prior_attempts == 0 and pending and pending[4] == 1
  if looked then
    local id = string.sub(job_id, (string.find(job_id, ':', 1, true) or #job_id) + 1)
    if redis.call('HDEL', queued, id) == 1 then
      local enqueued_at = string.sub(entry_id, 1, (string.find(entry_id, '-', 1, true) or 0) - 1)
      return 'queued', {id = id, enqueued_at = enqueued_at, removed = true}
    end
  end
  local row = redis.call('HMGET', record, 'status', 'attempts')
  local waiting = not row[1] and not looked and queued_state(record, queued)
  if waiting then
    return 'queued', waiting
  end
  return row[1], nil, row[2] and numbers[row[2]] or 0
end

-- Make the record of a job still `waiting` in its "queued" hash, before a way out that changes
-- its status (the job then leaves the call). later: seconds from now until it is due again,
-- kept on top of the record's ttl.
local function settle(record, queued, waiting, spec, entry_id, later)
  if waiting then
    record_queued(record, queued, waiting, spec.record_ttl + (later or 0),
      spec.task or task_of(stream, entry_id))
  end
end

local function start_one(record, queued, entry_id, job_id, spec)
  local pending = ours[entry_id]
  -- A job queued with no record yet: the write that marks it running makes its record; any
  -- other way out that changes its status makes it first (settle).
  local status, waiting, counted = status_of(record, queued, entry_id, job_id, spec, pending)
  local task = spec.task
  if ended(status) then
    return status
  end
  if not pending then
    return 'lost'
  end
  clock()
  if spec.expires_at > 0 and now > spec.expires_at then
    settle(record, queued, waiting, spec, entry_id)
    return 'expired'
  end
  if limited then
    -- Limits are acquired before the attempt is counted: a job held back does not run. It
    -- leaves the stream for the delayed set in this same step, so it holds no worker slot while
    -- it waits and is never lost.
    -- A slot holder is "<stream> <entry id>": the entry's stream is that of its level.
    local holder = stream .. ' ' .. entry_id
    local function hold_back(due, parked)
      settle(record, queued, waiting, spec, entry_id, math.ceil(math.max(due - now, 0) / 1000))
      if most then
        -- An entry claimed from a dead worker held a slot; the job waits without it.
        redis.call('ZREM', holders, holder)
      end
      local entry = redis.call('XRANGE', stream, entry_id, entry_id)
      redis.call('XACK', stream, group, entry_id)
      redis.call('XDEL', stream, entry_id)
      if #entry == 1 then
        local member = cmsgpack.pack(entry[1][2])
        delay(delayed, due, member)
        if parked then
          -- In line by when it was first parked (NX: a job refused again keeps its place).
          -- Each parked job is due within a lease and parks again if refused, so the line
          -- may expire once nobody parked for longer than that.
          redis.call('ZADD', parked_line, 'NX', now, member)
          redis.call('PEXPIRE', parked_line, lease + 60000)
        end
      end
      if status ~= false then
        -- A parked job may be made due before `due` (release.lua), its record untouched:
        -- `parked` tells moved.lua to look for its member before that time too.
        redis.call('HSET', record, 'status', 'scheduled', 'due_at', due, 'parked', parked and 1 or 0)
        tell(record, 'scheduled')
      end
    end
    -- An entry claimed from a dead worker may still hold its slot: it keeps it.
    if most and not redis.call('ZSCORE', holders, holder) then
      if redis.call('ZCARD', holders) >= most then
        -- A slot is held only while its entry is pending and renewed by its worker's lease
        -- (which resets the entry's idle time). Holders are scored by when they were last seen
        -- renewed, so only those not seen for a lease are looked at: forget the ones that
        -- finished without a release or whose worker died, note when the others were renewed.
        -- Holders of every priority level share the limit: each names its own stream.
        local streams = {}
        for i = holder_streams, holder_streams + 9 do
          streams[KEYS[i]] = true
        end
        local stale = redis.call('ZRANGEBYSCORE', holders, '-inf', now - lease)
        for _, other in ipairs(stale) do
          local other_stream, id = string.match(other, '^(.*) ([^ ]*)$')
          local held = streams[other_stream]
            and redis.call('XPENDING', other_stream, group, id, id, 1) or {}
          if #held == 0 or held[1][3] >= lease then
            redis.call('ZREM', holders, other)
          else
            redis.call('ZADD', holders, now - held[1][3], other)
          end
        end
      end
      if redis.call('ZCARD', holders) >= most then
        -- Woken by the next release; due after a lease anyway, in case no release comes.
        hold_back(now + lease, true)
        return 'parked'
      end
    end
    if interval_us ~= '' then
      -- GCRA: tat is when the next job may go. A job that comes too early reserves that time
      -- (and moves tat on), so each held-back job comes back to a slot of its own.
      local slot = tonumber(redis.call('ZSCORE', rate_reserved, job_id))
      if slot == nil then
        local interval = tonumber(interval_us)
        slot = math.max(tonumber(redis.call('GET', rate_tat) or 0), now_us)
        local ahead = math.ceil((slot + interval - now_us) / 1000)
        redis.call('SET', rate_tat, string.format('%.17g', slot + interval), 'PX', ahead + 1000)
        if slot > now_us then
          redis.call('ZADD', rate_reserved, string.format('%.17g', slot), job_id)
          redis.call('PEXPIRE', rate_reserved, ahead + lease + 60000)
        end
      elseif slot <= now_us then
        redis.call('ZREM', rate_reserved, job_id)
      end
      if slot > now_us then
        hold_back(math.ceil(slot / 1000), false)
        return 'deferred'
      end
    end
    if most then
      if redis.call('EXISTS', parked_line) == 1 then
        -- Back after a lease, not woken by a release: leave the line.
        local entry = redis.call('XRANGE', stream, entry_id, entry_id)
        if #entry == 1 then
          redis.call('ZREM', parked_line, cmsgpack.pack(entry[1][2]))
        end
      end
      redis.call('ZADD', holders, now, holder)
    end
  end
  local attempt
  if waiting then
    attempt = 1  -- it never started: a start makes the record
  elseif status == false then
    -- No record (fire and forget, or it expired): the stream's own delivery count is all we have.
    attempt = spec.prior_attempts + pending[4]
  else
    -- Counted in its record, and written there with its status below.
    attempt = counted + 1
  end
  if attempt > spec.most_attempts then
    settle(record, queued, waiting, spec, entry_id)
    if status then
      redis.call('HSET', record, 'attempts', digits[attempt])
    end
    return 'poison'
  end
  if waiting then
    -- One write makes the record and marks it running.
    record_queued(record, queued, waiting, spec.record_ttl_text,
      task or task_of(stream, entry_id), 'running', 'worker', consumer, 'started_at', now_text,
      'attempts', '1')
  elseif status ~= false or spec.keeps_record then
    -- A number passed to redis.call is formatted with a printf of "%.14g", which costs more.
    redis.call('HSET', record, 'status', 'running', 'worker', consumer, 'started_at', now_text,
      'attempts', digits[attempt])
  end
  if followed_jobs[job_id] then
    tell(record, 'running')
  end
  if events_limit > 0 then  -- mostly not: spares a call per job
    emit(events, events_limit, 'started', job_id, task, consumer)
  end
  return attempt
end

local replies = {}
for i = 1, count do
  local k = job_keys + (i - 1) * KEYS_PER_JOB
  local a = job_args + (i - 1) * ARGS_PER_JOB
  -- A refused write (OOM at maxmemory, a key of the wrong type) fails its job only: the
  -- others of the batch start.
  local ok, reply = pcall(start_one, KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1],
    spec_of(ARGV[a + 2]))
  if ok then
    replies[i] = reply
  else
    -- redis.call raises a table ({err = ...}); Lua itself raises a string.
    replies[i] = {err = type(reply) == 'table' and reply.err or tostring(reply)}
  end
end
return replies
