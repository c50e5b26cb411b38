-- Record the outcomes of a batch of one stream's deliveries and ack their entries, in one step,
-- each only if this consumer still owns its entry.
--
-- Fencing: XACK does not check who owns an entry, so a worker whose lease lapsed (and whose
-- entry another worker claimed) would otherwise ack away the new owner's delivery and overwrite
-- its outcome. The ownership checks and the writes run atomically here, entry by entry.
-- Ack late: an entry is acked (and leaves the stream, or is left for a trim: see remove below)
-- in the same step that stores its outcome (or schedules the retry, or writes the dead
-- letter), so a crash leaves either all of it or none.
-- One call per batch, not per job: a script call's own cost (its argument tables, the prelude,
-- its garbage) was most of what finishing a job cost the server. So the batch shares one TIME,
-- one look for the records, dependents, cancels and followers that the common jobs do not have,
-- one look at the delayed set for its retries, one XACK and one XTRIM (see remove below).
--
-- Returns per job, in order: 1 when applied, 0 when refused because the entry is no longer
-- ours, 2 when applied but not acked (other jobs wait for this one, see below), or an error
-- reply when the server refused one of its writes (nothing of it acked: written again later).
local stream = KEYS[1]
local dead = KEYS[2]
local delayed = KEYS[3]
local events = KEYS[4]
-- job ids scored by cancel time in ms (see cancel.lua)
local cancelled = KEYS[5]
-- job ids scored by how many follow each (job.events())
local followed = KEYS[6]
local job_keys = 7  -- KEYS[7...]: jobs
local group = ARGV[1]
local consumer = ARGV[2]
local dead_limit = ARGV[3]
-- a number: emit() would convert a string for each job
local events_limit = tonumber(ARGV[4])
-- then the delayed set's member of each retry, in order, then the least and the greatest entry id
local job_args = 5  -- ARGV[5...]: jobs
-- Per job, KEYS: its record, its uniqueness key, the set of jobs waiting for it; ARGV: its
-- entry id, its id, its spec (what the outcomes of one kind share; see spec_of), its outcome
-- value, and what its record keeps of its arguments (see spec_of; "" for nothing). A value per
-- job costs the server about a fifth of a redis.call (the call's tables take it in as a Lua
-- string), so the values most jobs share travel in the spec. A retry's member of the delayed
-- set (its entry's fields, with the attempts made so far) comes packed from the worker, which
-- holds the fields: reading the entry back and packing it cost the server more than the rest
-- of the retry's finish.
local KEYS_PER_JOB, ARGS_PER_JOB = 3, 5
local count = (#KEYS - job_keys + 1) / KEYS_PER_JOB
local events_on = events_limit > 0
local specs = {}
-- A spec is "<status> <outcome field> <result ttl> <key ttl> <told> <arguments field> <retry
-- delay> <reason length> <dead-letter reason><task>": status succeeded | failed | cancelled |
-- scheduled (a retry) | "-" (ack only); the record's field for the outcome value; the result
-- ttl (0: keep no record); seconds to keep the uniqueness key after the end ("-" when it has
-- none); told ("1" when the jobs waiting for it have been told it ended, else "0"); the
-- record's field for the arguments value (args, or args_size when they are too large to keep;
-- "-" for none); with status scheduled, the retry's delay in ms; then the dead-letter reason
-- ("" for none) and the task, one after the other, the reason's length telling where the task
-- begins (either may hold spaces). Parsed once per call, however many jobs share it.
local function spec_of(text)
  local spec = specs[text]
  if not spec then
    local status, outcome_field, ttl, key_ttl, told, arguments_field, retry_delay_ms,
      reason_length, rest = string.match(text,
        '^(%S+) (%S+) (%d+) (%S+) (%d) (%S+) (%d+) (%d+) (.*)$')
    reason_length = tonumber(reason_length)
    spec = {status = status ~= '-' and status or '', outcome_field = outcome_field,
      ttl = tonumber(ttl), ttl_text = ttl, key_ttl = key_ttl ~= '-' and key_ttl or nil,
      told = told == '1',
      arguments_field = arguments_field ~= '-' and arguments_field or nil,
      retry_delay_ms = tonumber(retry_delay_ms),
      dead_reason = string.sub(rest, 1, reason_length),
      task = string.sub(rest, reason_length + 1)}
    -- A job that others wait for (options(after=...), workflow members) is not acked until
    -- the worker has told them (aqueue/_depend.py) and acks again with told = "1": a crash in
    -- between redelivers the entry, and the redelivery (skipped: its job ended) tells them
    -- again.
    spec.waitable = spec.status ~= 'scheduled' and not spec.told
    -- Whether a job of the spec has anything to write: an outcome to store, a retry, a dead
    -- letter, a key, an event (or, see writes(), a record to delete). Acked without running
    -- ("" status): the record stays.
    spec.writes = spec.status ~= '' and (spec.ttl > 0 or spec.status == 'scheduled'
      or spec.dead_reason ~= '' or spec.key_ttl ~= nil or events_on)
    specs[text] = spec
  end
  return spec
end
-- The server's time in ms, as the records keep it: a number passed to redis.call is formatted
-- anew each time (a printf), so what every job of the batch writes is formatted once.
local now, now_text
local function server_now()
  if not now then
    now = now_ms()
    now_text = string.format('%d', now)
  end
  return now
end
-- Fencing, for the whole batch in one look (the consumer holds at most a few thousand
-- entries: those it runs and those it holds to start).
local least, greatest = ARGV[#ARGV - 1], ARGV[#ARGV]
local ours = owned_rows(stream, group, least, greatest, consumer, 1000000)

-- Whether any of `keys` exists: one look for the batch, since mostly none does.
local function any_exists(keys)
  return #keys > 0 and redis.call('EXISTS', unpack(keys)) > 0
end
-- Job i's first key is KEYS[job_keys + (i - 1) * KEYS_PER_JOB], its first value
-- ARGV[job_args + (i - 1) * ARGS_PER_JOB]: values are read where they are used (a table per
-- job, or a function call to find them, would cost more than the rest of a fire-and-forget
-- job's finish). Each job's spec, by its place in the call (job_specs[i]), is looked up once;
-- so is each retry's member (retry_members[i]).
-- A job that keeps no record may have one all the same (a cancel or a wait made it): it is
-- deleted at the end, as any record of such a job is. Only a job with a status can be waited
-- on (see depend.lua), and one that keeps no record has none unless it has a record all the
-- same: such jobs are looked at only when some record is.
-- Cancelled while it ran: the cancel wrote the outcome (and freed the key); a late result or
-- retry must not bring the job back. Such a job is in the queue's cancelled set (the cancel of
-- a running job announces it there, for its worker to stop the run, and keeps it for an hour;
-- a worker that heard of it only acks), so one look for the batch finds the jobs whose record
-- must be read (checked): mostly none.
local job_specs, recordless, retry_members, retried, waited_on, checked = {}, {}, {}, {}, {}, {}
local member_at = job_args + count * ARGS_PER_JOB
for i = 1, count do
  local a = job_args + (i - 1) * ARGS_PER_JOB
  local spec = spec_of(ARGV[a + 2])
  job_specs[i] = spec
  local mine = ours[ARGV[a]]
  if spec.status == 'scheduled' then
    retry_members[i] = ARGV[member_at]
    member_at = member_at + 1
    if spec.ttl > 0 and mine then
      retried[#retried + 1] = ARGV[a + 1]
    end
  end
  if mine then
    local k = job_keys + (i - 1) * KEYS_PER_JOB
    if spec.ttl == 0 then
      recordless[#recordless + 1] = KEYS[k]
    elseif spec.waitable then
      waited_on[#waited_on + 1] = KEYS[k + 2]
    end
    if spec.writes and spec.status ~= 'cancelled' then
      checked[#checked + 1] = ARGV[a + 1]
    end
  end
end
local some_records = any_exists(recordless)
if some_records then
  for i = 1, count do
    local a = job_args + (i - 1) * ARGS_PER_JOB
    local spec = job_specs[i]
    if spec.ttl == 0 and ours[ARGV[a]] then
      if spec.waitable then
        waited_on[#waited_on + 1] = KEYS[job_keys + (i - 1) * KEYS_PER_JOB + 2]
      end
      if not spec.writes and spec.status ~= '' and spec.status ~= 'cancelled' then
        checked[#checked + 1] = ARGV[a + 1]
      end
    end
  end
end
-- Whether a job of `spec` has anything to write (see spec_of): its record to delete, too.
local function writes(spec)
  return spec.writes or some_records and spec.status ~= ''
end
-- Only a job someone follows is told it waits for its retry: a result waiter wakes only at
-- the end.
local followed_jobs = followed_among(followed, #retried, function(i)
  return retried[i]
end)
local add_delayed, wake_promoter = delays(delayed)
local some_waited_on = any_exists(waited_on)
local cancelled_lately = {}
-- Mostly no job of the queue was cancelled lately: one look at the set spares taking in every
-- id of the batch.
if #checked > 0 and redis.call('EXISTS', cancelled) == 1 then
  for j, score in ipairs(redis.call('ZMSCORE', cancelled, unpack(checked))) do
    if score then
      cancelled_lately[checked[j]] = true
    end
  end
end

-- The record's field that keeps job a's arguments (or their size) once the entry that holds
-- them is gone, and its value: `aqueue job` shows them after the run. Nothing when it keeps
-- neither.
local function kept_arguments(spec, a)
  if spec.arguments_field then
    return spec.arguments_field, ARGV[a + 4]
  end
end

local function write_outcome(i, k, a, spec)
  local record, unique = KEYS[k], KEYS[k + 1]
  local entry_id, job_id, outcome = ARGV[a], ARGV[a + 1], ARGV[a + 3]
  local status, outcome_field, ttl, dead_reason = spec.status, spec.outcome_field, spec.ttl,
    spec.dead_reason
  if dead_reason ~= '' then
    -- Keep the original fields so the entry can be inspected and replayed.
    local entry = redis.call('XRANGE', stream, entry_id, entry_id)
    local fields = {'reason', dead_reason, 'entry', entry_id, 'dead_at', server_now()}
    if #entry == 1 then
      for _, value in ipairs(entry[1][2]) do
        fields[#fields + 1] = value
      end
    end
    redis.call('XADD', dead, 'MAXLEN', '~', dead_limit, '*', unpack(fields))
  end
  if cancelled_lately[job_id] and redis.call('HGET', record, 'status') == 'cancelled' then
    return
  end
  if status == 'scheduled' then
    -- The retry waits in the delayed set (not in any worker's memory) until it is due. Its
    -- member carries the attempts made, for jobs that keep no record to count in.
    if not spec.due_text then
      -- A number passed to redis.call is formatted anew each time (a printf).
      spec.due_text = string.format('%d', server_now() + spec.retry_delay_ms)
    end
    add_delayed(spec.due_text, retry_members[i])
    if ttl > 0 then
      redis.call('HSET', record, 'status', 'scheduled', outcome_field, outcome, 'due_at',
        spec.due_text, kept_arguments(spec, a))
      if followed_jobs[job_id] then
        tell(record, 'scheduled')
      end
    end
    if events_on then
      emit(events, events_limit, 'retried', job_id, spec.task, consumer)
    end
    return
  end
  if spec.key_ttl and redis.call('GET', unique) == job_id then
    -- The job ended: free its key, or keep deduplicating for the key ttl.
    if tonumber(spec.key_ttl) > 0 then
      redis.call('EXPIRE', unique, spec.key_ttl)
    else
      redis.call('DEL', unique)
    end
  end
  if ttl > 0 then
    server_now()
    redis.call('HSET', record, 'status', status, outcome_field, outcome,
      'finished_at', now_text, kept_arguments(spec, a))
    redis.call('EXPIRE', record, spec.ttl_text)
    -- Only a wake-up for waiters (they read the record): a user without channel permissions
    -- must not fail the ack after its writes were made.
    tell(record, status)
  elseif some_records then
    redis.call('DEL', record)
  end
  if events_on then
    emit(events, events_limit, dead_reason ~= '' and 'dead-lettered' or status, job_id,
      spec.task, consumer)
  end
end

-- Every write that the server may refuse (OOM at maxmemory, NOREPLICAS, a key of the wrong
-- type) comes before XACK/XDEL: a script stopped by an error keeps the writes it made, so a
-- refused write must leave its entry pending (the worker retries the outcome), never acked
-- without its outcome. Each job's writes run in a pcall: one job's refusal leaves the others
-- of the batch to be written and acked. At maxmemory the first write decides: a script that
-- has written once may go on, so XACK (allowed at OOM) must not come first either.
local replies, acked = {}, {}
for i = 1, count do
  local k, a = job_keys + (i - 1) * KEYS_PER_JOB, job_args + (i - 1) * ARGS_PER_JOB
  local entry_id = ARGV[a]
  local ok, err = true, nil
  if not ours[entry_id] then
    replies[i] = 0
  else
    local spec = job_specs[i]
    if writes(spec) then
      ok, err = pcall(write_outcome, i, k, a, spec)
    end
    if not ok then
      -- redis.call raises a table ({err = ...}); Lua itself raises a string.
      replies[i] = {err = type(err) == 'table' and err.err or tostring(err)}
    elseif some_waited_on and spec.waitable and redis.call('EXISTS', KEYS[k + 2]) == 1 then
      replies[i] = 2
    else
      replies[i] = 1
      acked[#acked + 1] = entry_id
    end
  end
end
-- Acked entries leave the stream by trim, soon after their ack. The group reads the stream in
-- order from its start, so every entry below its first pending one was acked: one exact XTRIM
-- MINID drops those, node by node, where XDEL looks for each id from the start of its node
-- (which costs more than the rest of a fire-and-forget job's finish). Entries acked above the
-- first pending one (jobs that ended before an older one) are left for the XTRIM that follows
-- its ack, when it was enqueued less than LEFT_MS before them: with several workers nearly
-- every batch lies above another worker's oldest entry, and deleting each by id cost a
-- saturated server 40% more per job at 4 worker processes, 47% at 8. Entries further above
-- it (an old job still runs) are deleted by id at once, so what is left is at most LEFT_MS of
-- enqueues. Whatever counts unfinished work tells them apart (unfinished() in the prelude).
local LEFT_MS = 1000
local function remove(acked_ids)
  local first = redis.call('XPENDING', stream, group, '-', '+', 1)[1]
  if not first then
    -- Nothing pending: every entry the group was given was acked, those left above this
    -- batch too. Mostly nothing else is in the stream (an idle queue's every finish comes
    -- here), so the group's position is looked up only when something is.
    redis.call('XTRIM', stream, 'MINID', greatest)
    redis.call('XDEL', stream, greatest)
    if redis.call('XLEN', stream) > 0 then
      local last = group_info(stream, group)['last-delivered-id']
      if last ~= greatest then
        redis.call('XTRIM', stream, 'MINID', last)
        redis.call('XDEL', stream, last)
      end
    end
    return
  end
  redis.call('XTRIM', stream, 'MINID', first[1])
  local first_ms, first_seq = id_numbers(first[1])
  local greatest_ms, greatest_seq = id_numbers(greatest)
  if id_before(greatest_ms, greatest_seq, first_ms, first_seq) then
    return  -- the whole batch lay below it
  end
  if greatest_ms - first_ms < LEFT_MS then
    return  -- left: the XTRIM after the first pending one's ack drops them
  end
  local least_ms, least_seq = id_numbers(least)
  if id_before(first_ms, first_seq, least_ms, least_seq) then
    -- The whole batch lies above it (the common case: an older job still runs), so no id of
    -- it needs parsing.
    redis.call('XDEL', stream, unpack(acked_ids))
    return
  end
  local above = {}
  for _, id in ipairs(acked_ids) do
    local ms, seq = id_numbers(id)
    if id_before(first_ms, first_seq, ms, seq) then
      above[#above + 1] = id
    end
  end
  if #above > 0 then
    redis.call('XDEL', stream, unpack(above))
  end
end
wake_promoter()
if #acked > 0 then
  redis.call('XACK', stream, group, unpack(acked))
  remove(acked)
end
return replies
