-- Record a job's outcome and ack its entry, in one step, only if this consumer still owns it.
--
-- Fencing: XACK does not check who owns an entry, so a worker whose lease lapsed (and whose
-- entry another worker claimed) would otherwise ack away the new owner's delivery and overwrite
-- its outcome. The ownership check and the writes run atomically here.
-- Ack late: the entry leaves the stream (XACK + XDEL, so the stream holds only unfinished work)
-- in the same step that stores the outcome (or schedules the retry, or writes the dead letter),
-- so a crash leaves either all of it or none.
--
-- KEYS: stream, job record, dead-letter stream, delayed set, uniqueness key (or any key),
--       the job's dependents set (the jobs that wait for it), the queue's event stream
-- ARGV: group, consumer, entry id,
--       status: succeeded | failed | cancelled | scheduled (a retry) | "" (ack only),
--       outcome field ("result" | "error"), outcome value,
--       result ttl in seconds (0: keep no record),
--       dead-letter reason ("" for none), dead-letter stream max length,
--       retry delay in ms and the attempt that failed (with status "scheduled"),
--       job id and seconds to keep the uniqueness key after the end ("" when it has none),
--       "1" when the jobs waiting for this one have been told it ended (else ""),
--       events kept (0: none), task name,
--       the job's encoded arguments for its record to keep ("" for none), or their size in
--       bytes when they are too large to keep ("" for none)
-- Returns 1 when applied, 0 when refused because the entry is no longer ours, 2 when applied
-- but not acked: other jobs wait for this one (see below).
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
-- Every write that the server may refuse (OOM at maxmemory, NOREPLICAS, a key of the wrong
-- type) comes before XACK/XDEL: a script stopped by an error keeps the writes it made, so a
-- refused write must leave the entry pending (the worker retries the outcome), never acked
-- without its outcome. At maxmemory the first write decides: a script that has written once
-- may go on, so XACK (allowed at OOM) must not come first either.
-- A job that others wait for (options(after=...), workflow members) is not acked until the
-- worker has told them (aqueue/_depend.py) and acks again with ARGV[14] = "1": a crash in
-- between redelivers the entry, and the redelivery (skipped: its job ended) tells them again.
local held = ARGV[4] ~= 'scheduled' and ARGV[14] ~= '1'
  and redis.call('EXISTS', KEYS[6]) == 1
local entry = nil
if ARGV[8] ~= '' or ARGV[4] == 'scheduled' then
  entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
end
if ARGV[8] ~= '' then
  -- Keep the original fields so the entry can be inspected and replayed.
  local fields = {'reason', ARGV[8], 'entry', ARGV[3], 'dead_at', now}
  if #entry == 1 then
    for _, value in ipairs(entry[1][2]) do
      fields[#fields + 1] = value
    end
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', unpack(fields))
end
-- The record keeps the arguments (or their size) once the entry that holds them is gone:
-- `aqueue job` shows them after the run.
local kept = {}
if ARGV[17] ~= '' then
  kept = {'args', ARGV[17]}
elseif ARGV[18] ~= '' then
  kept = {'args_size', ARGV[18]}
end
local function record()
  if ARGV[4] == '' then
    -- Acked without running (cancelled, or finished by an earlier delivery): the record stays.
    return
  end
  if ARGV[4] ~= 'cancelled' and redis.call('HGET', KEYS[2], 'status') == 'cancelled' then
    -- Cancelled while it ran: the cancel wrote the outcome (and freed the key); a late result
    -- or retry must not bring the job back.
    return
  end
  local ttl = tonumber(ARGV[7])
  if ARGV[4] == 'scheduled' then
    -- The retry waits in the delayed set (not in any worker's memory) until it is due.
    local due = now + tonumber(ARGV[10])
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
      fields[#fields + 1] = ARGV[11]
      redis.call('ZADD', KEYS[4], due, cmsgpack.pack(fields))
    end
    if ttl > 0 then
      redis.call('HSET', KEYS[2], 'status', 'scheduled', ARGV[5], ARGV[6], 'due_at', due,
        unpack(kept))
      redis.pcall('PUBLISH', KEYS[2], 'scheduled')
    end
    emit(KEYS[7], ARGV[15], 'retried', ARGV[12], ARGV[16], ARGV[2])
    return
  end
  if ARGV[13] ~= '' and redis.call('GET', KEYS[5]) == ARGV[12] then
    -- The job ended: free its key, or keep deduplicating for the key ttl.
    if tonumber(ARGV[13]) > 0 then
      redis.call('EXPIRE', KEYS[5], ARGV[13])
    else
      redis.call('DEL', KEYS[5])
    end
  end
  if ttl > 0 then
    redis.call('HSET', KEYS[2], 'status', ARGV[4], ARGV[5], ARGV[6], 'finished_at', now,
      unpack(kept))
    redis.call('EXPIRE', KEYS[2], ttl)
    -- Only a wake-up for waiters (they read the record): a user without channel permissions
    -- must not fail the ack after its writes were made.
    redis.pcall('PUBLISH', KEYS[2], ARGV[4])
  else
    redis.call('DEL', KEYS[2])
  end
  emit(KEYS[7], ARGV[15], ARGV[8] ~= '' and 'dead-lettered' or ARGV[4], ARGV[12], ARGV[16],
    ARGV[2])
end
record()
if not held then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
end
return held and 2 or 1
