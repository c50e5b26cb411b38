-- Record a job's outcome and ack its entry, in one step, only if this consumer still owns it.
--
-- Fencing: XACK does not check who owns an entry, so a worker whose lease lapsed (and whose
-- entry another worker claimed) would otherwise ack away the new owner's delivery and overwrite
-- its outcome. The ownership check and the writes run atomically here.
-- Ack late: the entry leaves the stream (XACK + XDEL, so the stream holds only unfinished work)
-- in the same step that stores the outcome (or schedules the retry, or writes the dead letter),
-- so a crash leaves either all of it or none.
--
-- Returns 1 when applied, 0 when refused because the entry is no longer ours, 2 when applied
-- but not acked: other jobs wait for this one (see below).
local stream = KEYS[1]
local record = KEYS[2]
local dead = KEYS[3]
local delayed = KEYS[4]
local unique = KEYS[5]
local dependents = KEYS[6]
local events = KEYS[7]
local group = ARGV[1]
local consumer = ARGV[2]
local entry_id = ARGV[3]
-- succeeded | failed | cancelled | scheduled (a retry) | "" (ack only)
local status = ARGV[4]
local outcome_field = ARGV[5]
local outcome = ARGV[6]
-- 0: keep no record
local result_ttl = tonumber(ARGV[7])
-- "" for none
local dead_reason = ARGV[8]
local dead_limit = ARGV[9]
-- with status "scheduled": the retry's delay and the attempt that failed
local retry_delay_ms = tonumber(ARGV[10])
local attempt = ARGV[11]
local job_id = ARGV[12]
-- seconds to keep the uniqueness key after the end ("" when the job has none)
local key_ttl = ARGV[13]
-- "1" when the jobs waiting for this one have been told it ended
local told = ARGV[14]
local events_limit = ARGV[15]
local task = ARGV[16]
-- the job's encoded arguments for its record to keep ("" for none), or their size in bytes
-- when they are too large to keep ("" for none)
local arguments = ARGV[17]
local arguments_size = ARGV[18]
if not owned(stream, group, entry_id, consumer) then
  return 0
end
local now = now_ms()
-- Every write that the server may refuse (OOM at maxmemory, NOREPLICAS, a key of the wrong
-- type) comes before XACK/XDEL: a script stopped by an error keeps the writes it made, so a
-- refused write must leave the entry pending (the worker retries the outcome), never acked
-- without its outcome. At maxmemory the first write decides: a script that has written once
-- may go on, so XACK (allowed at OOM) must not come first either.
-- A job that others wait for (options(after=...), workflow members) is not acked until the
-- worker has told them (aqueue/_depend.py) and acks again with told = "1": a crash in
-- between redelivers the entry, and the redelivery (skipped: its job ended) tells them again.
local held = status ~= 'scheduled' and told ~= '1'
  and redis.call('EXISTS', dependents) == 1
local entry = nil
if dead_reason ~= '' or status == 'scheduled' then
  entry = redis.call('XRANGE', stream, entry_id, entry_id)
end
if dead_reason ~= '' then
  -- Keep the original fields so the entry can be inspected and replayed.
  local fields = {'reason', dead_reason, 'entry', entry_id, 'dead_at', now}
  if #entry == 1 then
    for _, value in ipairs(entry[1][2]) do
      fields[#fields + 1] = value
    end
  end
  redis.call('XADD', dead, 'MAXLEN', '~', dead_limit, '*', unpack(fields))
end
-- The record keeps the arguments (or their size) once the entry that holds them is gone:
-- `aqueue job` shows them after the run.
local kept = {}
if arguments ~= '' then
  kept = {'args', arguments}
elseif arguments_size ~= '' then
  kept = {'args_size', arguments_size}
end
local function write_outcome()
  if status == '' then
    -- Acked without running (cancelled, or finished by an earlier delivery): the record stays.
    return
  end
  if status ~= 'cancelled' and redis.call('HGET', record, 'status') == 'cancelled' then
    -- Cancelled while it ran: the cancel wrote the outcome (and freed the key); a late result
    -- or retry must not bring the job back.
    return
  end
  local ttl = result_ttl
  if status == 'scheduled' then
    -- The retry waits in the delayed set (not in any worker's memory) until it is due.
    local due = now + retry_delay_ms
    if #entry == 1 then
      -- The entry carries its attempt count ("a"), for jobs that keep no record to count in.
      local fields, raw = {}, entry[1][2]
      for i = 1, #raw, 2 do
        if raw[i] ~= 'a' then
          fields[#fields + 1] = raw[i]
          fields[#fields + 1] = raw[i + 1]
        end
      end
      fields[#fields + 1] = 'a'
      fields[#fields + 1] = attempt
      redis.call('ZADD', delayed, due, cmsgpack.pack(fields))
    end
    if ttl > 0 then
      redis.call('HSET', record, 'status', 'scheduled', outcome_field, outcome, 'due_at', due,
        unpack(kept))
      redis.pcall('PUBLISH', record, 'scheduled')
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
    redis.call('HSET', record, 'status', status, outcome_field, outcome, 'finished_at', now,
      unpack(kept))
    redis.call('EXPIRE', record, ttl)
    -- Only a wake-up for waiters (they read the record): a user without channel permissions
    -- must not fail the ack after its writes were made.
    redis.pcall('PUBLISH', record, status)
  else
    redis.call('DEL', record)
  end
  emit(events, events_limit, dead_reason ~= '' and 'dead-lettered' or status, job_id, task,
    consumer)
end
write_outcome()
if not held then
  redis.call('XACK', stream, group, entry_id)
  redis.call('XDEL', stream, entry_id)
end
return held and 2 or 1
