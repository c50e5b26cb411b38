-- Move dead letters back into the work stream, oldest first, each in one step with its removal
-- from the dead-letter stream, so a crash neither loses nor duplicates one. A replayed job
-- starts over: its record says queued again with no attempts (a poison job gets a fresh count).
-- A replay is an operator's decision to run the job again, so it is the one way a `failed` job
-- leaves its final status. A job that succeeded or was cancelled meanwhile is not run again:
-- its letter stays, counted as left.
-- The letter's entry goes back whole (every field but those the table in aqueue/_message.py
-- marks as not replayed), so no option of the job is lost; aqueue's own fields, written in
-- front of the entry's, are left out. A job with a priority level ("l") goes back to its
-- level's stream.
-- KEYS: dead-letter stream, stream, priority levels set
-- ARGV: queue key prefix (for job records, which share the queue's hash tag), most to move,
--       aqueue's dead-letter field names (space-separated), entry fields not replayed (same),
--       the task name of the letters to replay ("" for any), text their reason holds ("" for any)
-- Returns {replayed, left: letters with nothing to replay (no job, or one that ended well)}.
-- Letters of another task or reason are neither replayed nor counted.
local limit = tonumber(ARGV[2])
local function set_of(words)
  local set = {}
  for word in string.gmatch(words, '%S+') do
    set[word] = true
  end
  return set
end
local own, dropped = set_of(ARGV[3]), set_of(ARGV[4])
local replayed, left = 0, 0
local start = '-'
while replayed < limit do
  -- Scan on past letters that cannot be replayed, so they never block the ones behind them.
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 100)
  if #entries == 0 then
    break
  end
  start = '(' .. entries[#entries][1]
  for _, entry in ipairs(entries) do
    if replayed >= limit then
      break
    end
    local fields, job, unique, stream = {}, nil, nil, KEYS[2]
    local raw, first = entry[2], 1
    -- aqueue's fields lead, each once: the entry's own begin at the first name that is not
    -- one of them, or that comes again.
    local seen = {}
    while first < #raw and own[raw[first]] and not seen[raw[first]] do
      seen[raw[first]] = raw[first + 1]
      first = first + 2
    end
    local task = nil
    for i = first, #raw, 2 do
      local name, value = raw[i], raw[i + 1]
      if not dropped[name] then
        fields[#fields + 1] = name
        fields[#fields + 1] = value
        if name == 'j' then
          job = value
        elseif name == 't' then
          task = value
        elseif name == 'u' then
          unique = value
        elseif name == 'l' and string.match(value, '^[0-46-9]$') then
          -- Any level but 5, the default, whose stream is the queue's own.
          stream = KEYS[2] .. ':' .. value
        end
      end
    end
    local record = job and ARGV[1] .. ':job:' .. (string.match(job, ':(.*)$') or '')
    local status = record and redis.call('HGET', record, 'status')
    local reason = type(seen['reason']) == 'string' and seen['reason'] or ''
    if (ARGV[5] ~= '' and task ~= ARGV[5])
        or (ARGV[6] ~= '' and not string.find(reason, ARGV[6], 1, true)) then
      -- Not selected: left as it is.
    elseif job == nil or status == 'succeeded' or status == 'cancelled' then
      left = left + 1
    else
      if stream ~= KEYS[2] then
        redis.call('SADD', KEYS[3], string.sub(stream, #KEYS[2] + 2))
      end
      redis.call('XADD', stream, '*', unpack(fields))
      -- A replayed job holds its uniqueness key again, unless another job took it meanwhile.
      if unique and string.sub(unique, 1, #ARGV[1]) == ARGV[1] then
        redis.call('SET', unique, job, 'NX', 'EX', 7 * 24 * 3600)
      end
      redis.call('XDEL', KEYS[1], entry[1])
      if status then
        redis.call('HDEL', record, 'error', 'finished_at', 'started_at', 'worker', 'result')
        redis.call('HSET', record, 'status', 'queued', 'attempts', 0)
        redis.pcall('PUBLISH', record, 'queued')
      end
      replayed = replayed + 1
    end
  end
end
return {replayed, left}
