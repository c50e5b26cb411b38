-- Begin one delivery: count it as an attempt and mark the job running, unless it must not run.
-- Every delivery counts, crashes included, so a message that kills its worker each time ends
-- in the dead-letter stream instead of killing workers forever.
-- KEYS: job record, stream, the job's "queued" hash, the queue's event stream
-- ARGV: worker name, entry id, group, most attempts allowed, keeps a record ("1" or "0"),
--       attempts made before this entry was written (its "a" field, for retries),
--       epoch ms after which the job must not start (its "x" field; 0: none),
--       seconds to keep the record while the job is unfinished, task name (its "t" field),
--       events kept (0: none), job id
-- Returns the attempt number to run, or a reason not to run it:
--   succeeded/failed/cancelled  the job already ended (acked without running)
--   lost                        the entry is no longer ours (another worker claimed it)
--   expired                     not started before its expiry (the worker records it cancelled)
--   poison                      delivered more often than allowed (dead-lettered)
--   deferred/parked             held back by a rate/concurrency limit (moved to the delayed set)
local status = redis.call('HGET', KEYS[1], 'status')
-- A job queued with no record yet (see _queued.lua): the write that marks it running makes
-- its record; any other way out that changes its status makes it first (settle). The record
-- is read first: whatever makes one removes the field, but a record (a cancel) must win.
local queued = not status and queued_state(KEYS[1], KEYS[3])
if queued then
  status = 'queued'
end
local task = ARGV[9] ~= '' and ARGV[9] or nil
-- later: seconds from now until it is due again, kept on top of the record's ttl.
local function settle(later)
  if queued then
    record_queued(KEYS[1], KEYS[3], queued, ARGV[8] + (later or 0), task)
    queued = nil
  end
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return status
end
local pending = redis.call('XPENDING', KEYS[2], ARGV[3], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[1] then
  return 'lost'
end
local t = redis.call('TIME')
local now_us = t[1] * 1000000 + t[2]
local now = math.floor(now_us / 1000)
local expires = tonumber(ARGV[7])
if expires > 0 and now > expires then
  settle()
  return 'expired'
end
if #KEYS > 4 and ARGV[15] ~= '' then
  -- Limits, only for tasks that have some (see aqueue/_limits.py), acquired before the
  -- attempt is counted: a job held back does not run. It leaves the stream for the delayed
  -- set in this same step, so it holds no worker slot while it waits and is never lost.
  -- KEYS: (5) rate tat, (6) rate reservations, (7) concurrency holders, (8) parked line,
  --       (9) delayed set
  -- ARGV: (12) microseconds between two jobs of the rate ("" for none), (13) most running at
  --       once ("" for none), (14) lease in ms, (15) job id
  -- A slot holder is "<stream> <entry id>": the entry's stream is that of its level.
  local holder = KEYS[2] .. ' ' .. ARGV[2]
  local lease = tonumber(ARGV[14])
  local most = tonumber(ARGV[13])
  local function hold_back(due, parked)
    settle(math.ceil(math.max(due - now, 0) / 1000))
    if most then
      -- An entry claimed from a dead worker held a slot; the job waits without it.
      redis.call('ZREM', KEYS[7], holder)
    end
    local entry = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])
    redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
    redis.call('XDEL', KEYS[2], ARGV[2])
    if #entry == 1 then
      local member = cmsgpack.pack(entry[1][2])
      redis.call('ZADD', KEYS[9], due, member)
      if parked then
        -- In line by when it was first parked (NX: a job refused again keeps its place).
        -- Each parked job is due within a lease and parks again if refused, so the line
        -- may expire once nobody parked for longer than that.
        redis.call('ZADD', KEYS[8], 'NX', now, member)
        redis.call('PEXPIRE', KEYS[8], lease + 60000)
      end
    end
    if status ~= false then
      redis.call('HSET', KEYS[1], 'status', 'scheduled', 'due_at', due)
      redis.pcall('PUBLISH', KEYS[1], 'scheduled')
    end
  end
  -- An entry claimed from a dead worker may still hold its slot: it keeps it.
  if most and not redis.call('ZSCORE', KEYS[7], holder) then
    if redis.call('ZCARD', KEYS[7]) >= most then
      -- A slot is held only while its entry is pending and renewed by its worker's lease
      -- (which resets the entry's idle time). Holders are scored by when they were last seen
      -- renewed, so only those not seen for a lease are looked at: forget the ones that
      -- finished without a release or whose worker died, note when the others were renewed.
      local stale = redis.call('ZRANGEBYSCORE', KEYS[7], '-inf', now - lease)
      for _, other in ipairs(stale) do
        -- Holders of every priority level share the limit: each names its own stream.
        local stream, id = string.match(other, '^(.*) ([^ ]*)$')
        local held = stream and redis.call('XPENDING', stream, ARGV[3], id, id, 1) or {}
        if #held == 0 or held[1][3] >= lease then
          redis.call('ZREM', KEYS[7], other)
        else
          redis.call('ZADD', KEYS[7], now - held[1][3], other)
        end
      end
    end
    if redis.call('ZCARD', KEYS[7]) >= most then
      -- Woken by the next release; due after a lease anyway, in case no release comes.
      hold_back(now + lease, true)
      return 'parked'
    end
  end
  if ARGV[12] ~= '' then
    -- GCRA: tat is when the next job may go. A job that comes too early reserves that time
    -- (and moves tat on), so each held-back job comes back to a slot of its own.
    local slot = tonumber(redis.call('ZSCORE', KEYS[6], ARGV[15]))
    if slot == nil then
      local interval = tonumber(ARGV[12])
      slot = math.max(tonumber(redis.call('GET', KEYS[5]) or 0), now_us)
      local ahead = math.ceil((slot + interval - now_us) / 1000)
      redis.call('SET', KEYS[5], string.format('%.17g', slot + interval), 'PX', ahead + 1000)
      if slot > now_us then
        redis.call('ZADD', KEYS[6], string.format('%.17g', slot), ARGV[15])
        redis.call('PEXPIRE', KEYS[6], ahead + lease + 60000)
      end
    elseif slot <= now_us then
      redis.call('ZREM', KEYS[6], ARGV[15])
    end
    if slot > now_us then
      hold_back(math.ceil(slot / 1000), false)
      return 'deferred'
    end
  end
  if most then
    if redis.call('EXISTS', KEYS[8]) == 1 then
      -- Back after a lease, not woken by a release: leave the line.
      local entry = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])
      if #entry == 1 then
        redis.call('ZREM', KEYS[8], cmsgpack.pack(entry[1][2]))
      end
    end
    redis.call('ZADD', KEYS[7], now, holder)
  end
end
local attempt
if queued then
  attempt = 1  -- it never started: a start makes the record
elseif status == false then
  -- No record (fire and forget, or it expired): the stream's own delivery count is all we have.
  attempt = tonumber(ARGV[6]) + pending[1][4]
else
  attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
if attempt > tonumber(ARGV[4]) then
  settle()
  return 'poison'
end
if queued then
  -- One write makes the record and marks it running.
  record_queued(KEYS[1], KEYS[3], queued, ARGV[8], task, 'running', 'worker', ARGV[1],
    'started_at', now, 'attempts', 1)
  redis.pcall('PUBLISH', KEYS[1], 'running')
elseif status ~= false or ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[1], 'started_at', now,
    'attempts', attempt)
  redis.pcall('PUBLISH', KEYS[1], 'running')
end
emit(KEYS[4], ARGV[10], 'started', ARGV[11], task, ARGV[1])
return attempt
