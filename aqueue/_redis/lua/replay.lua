-- Move dead letters back into the work stream, oldest first, each in one step with its removal
-- from the dead-letter stream, so a crash neither loses nor duplicates one. A replayed job
-- starts over: its record says queued again with no attempts (a poison job gets a fresh count).
-- A job with a priority level ("l" field) goes back to its level's stream.
-- KEYS: dead-letter stream, stream, priority levels set
-- ARGV: queue key prefix (for job records, which share the queue's hash tag), most to move
-- Returns {replayed, left: entries with nothing to replay (their payload was lost)}.
local limit = tonumber(ARGV[2])
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
    local fields, job, stream = {}, nil, KEYS[2]
    local raw = entry[2]
    for i = 1, #raw, 2 do
      local name = raw[i]
      if name == 'j' or name == 't' or name == 'p' or name == 'r' or name == 'o'
          or name == 'u' or name == 'k' or name == 'l' then
        fields[#fields + 1] = name
        fields[#fields + 1] = raw[i + 1]
        if name == 'j' then
          job = raw[i + 1]
        elseif name == 'l' and string.match(raw[i + 1], '^[0-46-9]$') then
          -- Any level but 5, the default, whose stream is the queue's own.
          stream = KEYS[2] .. ':' .. raw[i + 1]
          redis.call('SADD', KEYS[3], raw[i + 1])
        end
      end
    end
    if job == nil then
      left = left + 1
    else
      redis.call('XADD', stream, '*', unpack(fields))
      for i = 1, #fields, 2 do
        -- A replayed job holds its uniqueness key again, unless another job took it meanwhile.
        if fields[i] == 'u' and string.sub(fields[i + 1], 1, #ARGV[1]) == ARGV[1] then
          redis.call('SET', fields[i + 1], job, 'NX', 'EX', 7 * 24 * 3600)
        end
      end
      redis.call('XDEL', KEYS[1], entry[1])
      local record = ARGV[1] .. ':job:' .. (string.match(job, ':(.*)$') or '')
      if redis.call('EXISTS', record) == 1 then
        redis.call('HDEL', record, 'error', 'finished_at', 'started_at', 'worker')
        redis.call('HSET', record, 'status', 'queued', 'attempts', 0)
      end
      replayed = replayed + 1
    end
  end
end
return {replayed, left}
