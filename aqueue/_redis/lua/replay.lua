-- Move dead letters back into the work stream, oldest first, each in one step with its removal
-- from the dead-letter stream, so a crash neither loses nor duplicates one. A replayed job
-- starts over: its record says queued again with no attempts (a poison job gets a fresh count).
-- A replay is an operator's decision to run the job again, so it is the one way a `failed` job
-- leaves its final status. A job that succeeded or was cancelled meanwhile is not run again:
-- its letter stays, counted as left.
-- The letter's entry goes back whole (every field but those the table in aqueue/_redis/_wire.py
-- marks as not replayed), so no option of the job is lost; aqueue's own fields, written in
-- front of the entry's, are left out. A job with a priority level goes back to its level's
-- stream.
-- The caller reads the letters and names each one's keys (its job's record, its uniqueness
-- key): this moves them.
-- Each replayed job is told enqueued in the queue's event stream: it waits in the queue anew.
-- Returns {replayed, left: letters with nothing to replay (no job, or one that ended well)}.
local dead = KEYS[1]
local levels = KEYS[2]
local events = KEYS[3]
local streams = 4  -- KEYS[4...]: streams
-- per letter, in order: the record of its job and its uniqueness key (any keys for none)
local letter_keys = 14  -- KEYS[14...]: letters
-- aqueue's dead-letter field names (space-separated)
local own_fields = ARGV[1]
-- entry fields not replayed (same)
local dropped_fields = ARGV[2]
local most = tonumber(ARGV[3])
local events_limit = ARGV[4]
local letter_ids = 5  -- ARGV[5...]: letters
local function set_of(words)
  local set = {}
  for word in string.gmatch(words, '%S+') do
    set[word] = true
  end
  return set
end
local own, dropped = set_of(own_fields), set_of(dropped_fields)
local replayed, left = 0, 0
for i = letter_ids, #ARGV do
  if replayed >= most then
    break
  end
  local letter = redis.call('XRANGE', dead, ARGV[i], ARGV[i])[1]
  if letter then
    local k = letter_keys + (i - letter_ids) * 2
    local record, unique = KEYS[k], KEYS[k + 1]
    local fields, job, task, unique_field, level = {}, nil, nil, nil, nil
    local raw, first = letter[2], 1
    -- aqueue's fields lead, each once: the entry's own begin at the first name that is not
    -- one of them, or that comes again.
    local seen = {}
    while first < #raw and own[raw[first]] and not seen[raw[first]] do
      seen[raw[first]] = true
      first = first + 2
    end
    for f = first, #raw, 2 do
      local name, value = raw[f], raw[f + 1]
      if not dropped[name] then
        fields[#fields + 1] = name
        fields[#fields + 1] = value
        if name == FIELD.job_id then
          job = value
        elseif name == FIELD.task then
          task = value
        elseif name == FIELD.unique_key then
          unique_field = value
        elseif name == FIELD.level then
          level = value
        end
      end
    end
    local hex = job and string.match(job, ':(.*)$')
    local mine = hex and string.match(record, ':job:(.*)$') == hex
    local status = mine and redis.call('HGET', record, 'status')
    if not mine or status == 'succeeded' or status == 'cancelled' then
      left = left + 1
    else
      add_entry(streams, levels, level, fields)
      -- A replayed job holds its uniqueness key again, unless another job took it meanwhile.
      if unique_field == unique then
        redis.call('SET', unique, job, 'NX', 'EX', 7 * 24 * 3600)
      end
      redis.call('XDEL', dead, ARGV[i])
      if status then
        redis.call('HDEL', record, 'error', 'finished_at', 'started_at', 'worker', 'result')
        redis.call('HSET', record, 'status', 'queued', 'attempts', 0)
        tell(record, 'queued')
      end
      emit(events, events_limit, 'enqueued', job, task)
      replayed = replayed + 1
    end
  end
end
return {replayed, left}
