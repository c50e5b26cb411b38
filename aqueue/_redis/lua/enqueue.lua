-- Add jobs to one queue: each job's entry (in its level's stream, or in the delayed set when it
-- is due later) and its status together, so no reader ever sees a job without a status (it
-- would say "unknown") or a status without a job (it would wait forever).
-- A job that runs at once and holds no key keeps its status in a field of a small "queued" hash
-- (see _prelude.lua); the others get their record key at once.
-- With a uniqueness key, a job is added only if no job holds the key; the holder is returned
-- instead. Check and claim are one step, so racing producers add one job.
-- One call adds many jobs (enqueue_many): the script's fixed cost is paid once per call, not
-- once per job, and the queue's length is counted once.
-- Returns per job: 1 (added), 0 (refused: the queue holds its limit), or the id of the job
-- holding its key.
local delayed = KEYS[1]
local levels = KEYS[2]
local events = KEYS[3]
local streams = 4  -- KEYS[4...]: streams
local limit = tonumber(ARGV[1])
local events_limit = ARGV[2]
local stream_levels = ARGV[3]
-- the workers' consumer group, for the limit's exact count (see below)
local group = ARGV[4]
local job_args = 5  -- ARGV[5...]: jobs
-- The streams are those of the call's jobs' levels, one per character of stream_levels (a
-- level's digit, "-" for the default level), or every level's when the queue has a limit (the
-- limit counts them all): a call declares what it touches, and a plain enqueue sends one
-- stream, not ten. The jobs' keys follow them. (The stream of a level is found where it is
-- needed, not by a function: Lua makes each function a script defines anew on every call, at
-- about the cost of a redis.call, and a plain enqueue is one call.)
local job_keys = streams + #stream_levels
-- Per job, KEYS: its record, its "queued" hash, its uniqueness key; ARGV: its id, payload,
-- options ("" for none), and its task configuration's spec (what the jobs of one configuration
-- share, so a batch's jobs mostly share one; see spec_of).
local specs = {}
-- A spec is "<result ttl> <record ttl> <delay> <due> <key ttl> <expiry in> <expiry at>
-- <level> <task>": record ttl in seconds while unfinished (0: fire and forget, no record),
-- delay in ms from the server's now and due time in epoch ms (0: none), seconds to keep the
-- uniqueness key after the job ended ("-": the job has no key), expiry in ms from the
-- server's now and in epoch ms (0: none; a job not started by then is cancelled instead of
-- running late), priority level ("-": the default level), then the task name (which may hold
-- spaces). Parsed once per call, however many jobs share it.
local function spec_of(text)
  local spec = specs[text]
  if not spec then
    local result_ttl, record_ttl, delay, due_at, key_ttl, expires_in, expires_at, level, task =
      string.match(text, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (.*)$')
    spec = {result_ttl = result_ttl, record_ttl = tonumber(record_ttl), delay = tonumber(delay),
      due_at = tonumber(due_at), key_ttl = key_ttl ~= '-' and key_ttl or nil,
      expires_in = tonumber(expires_in), expires_at = tonumber(expires_at),
      level = level ~= '-' and level or nil, task = task,
      stream = KEYS[streams + string.find(stream_levels, level, 1, true) - 1]}
    specs[text] = spec
  end
  return spec
end
-- The server's time in ms, asked for (now = now or now_ms()) only when a job needs it: a job
-- that runs at once without a key gets its enqueue time from its entry id, and a redis.call
-- costs as much as the command it runs.
local now
local held = 0
if limit > 0 then
  -- The limit counts every priority level's stream. Their lengths, at once, count finished
  -- entries too (left for a trim, see finish.lua): when they say the call may not fit, the
  -- unfinished jobs are counted exactly, so that no producer is refused or kept waiting for
  -- jobs that ended.
  local level_streams = {}
  for _, level in ipairs({'-', unpack(redis.call('SMEMBERS', levels))}) do
    level_streams[#level_streams + 1] = KEYS[streams + string.find(stream_levels, level, 1, true) - 1]
  end
  held = redis.call('ZCARD', delayed)
  for _, stream in ipairs(level_streams) do
    held = held + redis.call('XLEN', stream)
  end
  if held + (#ARGV - job_args + 1) / 4 > limit then
    held = redis.call('ZCARD', delayed)
    for _, stream in ipairs(level_streams) do
      local waiting, running = unfinished(stream, group)
      held = held + waiting + running
    end
  end
end
local replies = {}
for i = 0, (#ARGV - job_args + 1) / 4 - 1 do
  local k, a = job_keys + i * 3, job_args + i * 4
  local record, queued, unique = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local id, payload, options, spec = ARGV[a], ARGV[a + 1], ARGV[a + 2], spec_of(ARGV[a + 3])
  local task, key_ttl, level = spec.task, spec.key_ttl, spec.level
  local holder = key_ttl and redis.call('GET', unique)
  if holder then
    replies[#replies + 1] = holder
  elseif limit > 0 and held >= limit then
    -- Backpressure: refuse before anything is written, rather than let Redis run out of
    -- memory. Later jobs of this call are refused too: nothing makes room meanwhile.
    replies[#replies + 1] = 0
  else
    held = held + 1
    -- The version of the wire format first, where this release writes one (put in place when
    -- the script loads: nothing at version 1, which an entry without it reads as).
    local fields = {VERSION_FIELDS FIELD.job_id, id, FIELD.task, task,
      FIELD.payload, payload, FIELD.result_ttl, spec.result_ttl}
    if options ~= '' then
      fields[#fields + 1] = FIELD.options
      fields[#fields + 1] = options
    end
    if key_ttl then
      -- The worker releases the key (or keeps it for the key ttl) when the job ends.
      fields[#fields + 1] = FIELD.unique_key
      fields[#fields + 1] = unique
      fields[#fields + 1] = FIELD.key_ttl
      fields[#fields + 1] = key_ttl
    end
    if level then
      -- The level travels with the entry, so a retry, a delay or a replay comes back to it;
      -- the set tells workers which streams to read.
      fields[#fields + 1] = FIELD.level
      fields[#fields + 1] = level
      add_level(levels, level)
    end
    local expires = spec.expires_at
    if spec.expires_in > 0 then
      now = now or now_ms()
      expires = now + spec.expires_in
    end
    if expires > 0 then
      fields[#fields + 1] = FIELD.expires_at_ms
      fields[#fields + 1] = expires
    end
    -- Due-ness is decided on the server's clock: a producer's skewed clock cannot move a delay.
    local due = 0
    if spec.delay > 0 then
      now = now or now_ms()
      due = now + spec.delay
    elseif spec.due_at > 0 then
      now = now or now_ms()
      due = spec.due_at > now and spec.due_at or 0
    end
    local entry
    if due > 0 then
      delay(delayed, due, cmsgpack.pack(fields))
    else
      entry = redis.call('XADD', spec.stream, '*', unpack(fields))
    end
    local ttl = spec.record_ttl
    if ttl > 0 and entry and not key_ttl then
      -- The bulk of the memory a backlog takes: a field, not a key.
      if level then
        entry = entry .. ' ' .. level
      end
      redis.call('HSET', queued, string.match(record, ':job:(.*)$'), entry)
      -- Bounded like a record: a hash no job was added to for that long goes (a field whose
      -- entry was deleted behind aqueue's back would otherwise stay forever).
      redis.call('EXPIRE', queued, ttl)
    elseif ttl > 0 then
      -- No attempts field until the first start counts one (absent reads as 0).
      now = now or now_ms()
      local status = {'status', 'queued', 'task', task, 'enqueued_at', now}
      if due > 0 then
        -- Kept at least until a while after it is due.
        ttl = ttl + math.ceil((due - now) / 1000)
        status[2] = 'scheduled'
        status[#status + 1] = 'due_at'
        status[#status + 1] = due
      end
      if key_ttl then
        -- So that cancelling the job can free its key.
        status[#status + 1] = 'unique'
        status[#status + 1] = unique
      end
      redis.call('HSET', record, unpack(status))
      redis.call('EXPIRE', record, ttl)
    end
    if key_ttl then
      -- Held while the job waits or runs; bounded, so a lost job cannot hold it forever.
      local wait = due > 0 and math.ceil((due - now) / 1000) or 0
      redis.call('SET', unique, id, 'EX', math.max(spec.record_ttl, 7 * 24 * 3600) + wait)
    end
    emit(events, events_limit, 'enqueued', id, task)
    replies[#replies + 1] = 1
  end
end
return replies
