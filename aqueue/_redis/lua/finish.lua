-- Record the outcomes of a batch of one stream's deliveries and ack their entries, in one step,
-- each only if this consumer still owns its entry.
--
-- Fencing: XACK does not check who owns an entry, so a worker whose lease lapsed (and whose
-- entry another worker claimed) would otherwise ack away the new owner's delivery and overwrite
-- its outcome. The ownership checks and the writes run atomically here, entry by entry.
-- Ack late: an entry leaves the stream (XACK + XDEL, so the stream holds only unfinished work)
-- in the same step that stores its outcome (or schedules the retry, or writes the dead letter),
-- so a crash leaves either all of it or none.
-- One call per batch, not per job: a script call's own cost (its argument tables, the prelude,
-- its garbage) was most of what finishing a job cost the server. So the batch shares one TIME,
-- one look for records and dependents that the common jobs do not have, one XACK and one XDEL.
--
-- Returns per job, in order: 1 when applied, 0 when refused because the entry is no longer
-- ours, 2 when applied but not acked (other jobs wait for this one, see below), or an error
-- reply when the server refused one of its writes (nothing of it acked: written again later).
local stream = KEYS[1]
local dead = KEYS[2]
local delayed = KEYS[3]
local events = KEYS[4]
local job_keys = 5  -- KEYS[5...]: jobs
local group = ARGV[1]
local consumer = ARGV[2]
local dead_limit = ARGV[3]
local events_limit = ARGV[4]
local job_args = 5  -- ARGV[5...]: jobs
-- Per job, KEYS: its record, its uniqueness key, the set of jobs waiting for it; ARGV: its
-- entry id, status (succeeded | failed | cancelled | scheduled (a retry) | "" (ack only)),
-- outcome field and value, result ttl (0: keep no record), dead-letter reason ("" for none),
-- with status "scheduled" the retry's delay in ms and the attempt that failed, job id, seconds
-- to keep the uniqueness key after the end ("" when it has none), told ("1" when the jobs
-- waiting for it have been told it ended), task, arguments (its encoded arguments for its
-- record to keep, "" for none) and arguments_size (their size in bytes when they are too large
-- to keep, "" for none).
local KEYS_PER_JOB, ARGS_PER_JOB = 3, 14
local count = (#KEYS - job_keys + 1) / KEYS_PER_JOB
local events_on = tonumber(events_limit) > 0
local now
local function server_now()
  now = now or now_ms()
  return now
end
-- Job i's first key and first value. Values are read where they are used: a table per job
-- would cost more than the rest of a fire-and-forget job's finish.
local function at(i)
  return job_keys + (i - 1) * KEYS_PER_JOB, job_args + (i - 1) * ARGS_PER_JOB
end

-- Fencing, for the whole batch in one look (the consumer holds at most a few thousand
-- entries: those it runs and those it holds to start).
local ids = {}
for i = 1, count do
  local _, a = at(i)
  ids[i] = ARGV[a]
end
local ours = owned_rows(stream, group, ids, consumer, 1000000)

-- Whether any of `keys` exists: one look for the batch, since mostly none does.
local function any_exists(keys)
  return #keys > 0 and redis.call('EXISTS', unpack(keys)) > 0
end
-- A job that others wait for (options(after=...), workflow members) is not acked until the
-- worker has told them (aqueue/_depend.py) and acks again with told = "1": a crash in
-- between redelivers the entry, and the redelivery (skipped: its job ended) tells them again.
local function may_be_waited_on(a)
  return ARGV[a + 1] ~= 'scheduled' and ARGV[a + 10] ~= '1'
end
-- A job that keeps no record may have one all the same (a cancel or a wait made it): it is
-- deleted at the end, as any record of such a job is.
local recordless = {}
for i = 1, count do
  local k, a = at(i)
  if ours[ARGV[a]] and ARGV[a + 4] == '0' then
    recordless[#recordless + 1] = KEYS[k]
  end
end
local some_records = any_exists(recordless)
-- Only a job with a status can be waited on (see depend.lua), and one that keeps no record has
-- none unless it has a record all the same: such jobs are looked at only when some record is.
local waited_on = {}
for i = 1, count do
  local k, a = at(i)
  if ours[ARGV[a]] and may_be_waited_on(a) and (ARGV[a + 4] ~= '0' or some_records) then
    waited_on[#waited_on + 1] = KEYS[k + 2]
  end
end
local some_waited_on = any_exists(waited_on)

-- The record's fields that keep job a's arguments (or their size; none when it has neither)
-- once the entry that holds them is gone: `aqueue job` shows them after the run.
local function kept_arguments(a)
  local arguments, arguments_size = ARGV[a + 12], ARGV[a + 13]
  if arguments ~= '' then
    return 'args', arguments
  elseif arguments_size ~= '' then
    return 'args_size', arguments_size
  end
end

local function write_outcome(k, a)
  local record, unique = KEYS[k], KEYS[k + 1]
  local entry_id, status, outcome_field, outcome = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local ttl, dead_reason, retry_delay_ms = tonumber(ARGV[a + 4]), ARGV[a + 5], ARGV[a + 6]
  local attempt, job_id, key_ttl, task = ARGV[a + 7], ARGV[a + 8], ARGV[a + 9], ARGV[a + 11]
  local entry = nil
  if dead_reason ~= '' or status == 'scheduled' then
    entry = redis.call('XRANGE', stream, entry_id, entry_id)
  end
  if dead_reason ~= '' then
    -- Keep the original fields so the entry can be inspected and replayed.
    local fields = {'reason', dead_reason, 'entry', entry_id, 'dead_at', server_now()}
    if #entry == 1 then
      for _, value in ipairs(entry[1][2]) do
        fields[#fields + 1] = value
      end
    end
    redis.call('XADD', dead, 'MAXLEN', '~', dead_limit, '*', unpack(fields))
  end
  if status ~= 'cancelled' and redis.call('HGET', record, 'status') == 'cancelled' then
    -- Cancelled while it ran: the cancel wrote the outcome (and freed the key); a late result
    -- or retry must not bring the job back.
    return
  end
  if status == 'scheduled' then
    -- The retry waits in the delayed set (not in any worker's memory) until it is due.
    local due = server_now() + tonumber(retry_delay_ms)
    if #entry == 1 then
      -- The entry carries its attempt count, for jobs that keep no record to count in.
      local fields, raw = {}, entry[1][2]
      for i = 1, #raw, 2 do
        if raw[i] ~= FIELD.prior_attempts then
          fields[#fields + 1] = raw[i]
          fields[#fields + 1] = raw[i + 1]
        end
      end
      fields[#fields + 1] = FIELD.prior_attempts
      fields[#fields + 1] = attempt
      delay(delayed, due, cmsgpack.pack(fields))
    end
    if ttl > 0 then
      redis.call('HSET', record, 'status', 'scheduled', outcome_field, outcome, 'due_at', due,
        kept_arguments(a))
      tell(record, 'scheduled')
    end
    emit(events, events_limit, 'retried', job_id, task, consumer)
    return
  end
  if key_ttl ~= '' and redis.call('GET', unique) == job_id then
    -- The job ended: free its key, or keep deduplicating for the key ttl.
    if tonumber(key_ttl) > 0 then
      redis.call('EXPIRE', unique, key_ttl)
    else
      redis.call('DEL', unique)
    end
  end
  if ttl > 0 then
    redis.call('HSET', record, 'status', status, outcome_field, outcome,
      'finished_at', server_now(), kept_arguments(a))
    redis.call('EXPIRE', record, ttl)
    -- Only a wake-up for waiters (they read the record): a user without channel permissions
    -- must not fail the ack after its writes were made.
    tell(record, status)
  elseif some_records then
    redis.call('DEL', record)
  end
  emit(events, events_limit, dead_reason ~= '' and 'dead-lettered' or status, job_id, task,
    consumer)
end

-- Whether job a has anything to write: an outcome to store, a retry, a dead letter, a key,
-- an event, or a record to delete. Acked without running ("" status): the record stays.
local function writes(a)
  local status = ARGV[a + 1]
  return status ~= '' and (ARGV[a + 4] ~= '0' or some_records or status == 'scheduled'
    or ARGV[a + 5] ~= '' or ARGV[a + 9] ~= '' or events_on)
end

-- Every write that the server may refuse (OOM at maxmemory, NOREPLICAS, a key of the wrong
-- type) comes before XACK/XDEL: a script stopped by an error keeps the writes it made, so a
-- refused write must leave its entry pending (the worker retries the outcome), never acked
-- without its outcome. Each job's writes run in a pcall: one job's refusal leaves the others
-- of the batch to be written and acked. At maxmemory the first write decides: a script that
-- has written once may go on, so XACK (allowed at OOM) must not come first either.
local replies, acked = {}, {}
for i = 1, count do
  local k, a = at(i)
  local entry_id = ARGV[a]
  local ok, err = true, nil
  if not ours[entry_id] then
    replies[i] = 0
  else
    if writes(a) then
      ok, err = pcall(write_outcome, k, a)
    end
    if not ok then
      -- redis.call raises a table ({err = ...}); Lua itself raises a string.
      replies[i] = {err = type(err) == 'table' and err.err or tostring(err)}
    elseif some_waited_on and may_be_waited_on(a)
        and redis.call('EXISTS', KEYS[k + 2]) == 1 then
      replies[i] = 2
    else
      replies[i] = 1
      acked[#acked + 1] = entry_id
    end
  end
end
if #acked > 0 then
  redis.call('XACK', stream, group, unpack(acked))
  redis.call('XDEL', stream, unpack(acked))
end
return replies
