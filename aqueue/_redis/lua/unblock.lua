-- Release a waiting job exactly once: add its stream entry (with the payload that carries its
-- dependencies' results), or finish a parent record with its outcome. The wait hash goes in the
-- same step, so a second caller (a redelivered dependency, a racing worker) does nothing.
-- A release is no event (the job was told enqueued when it began to wait, wait.lua); a finish
-- is told with its status, as finish.lua tells a run's end.
-- KEYS: job record, wait hash, pending set, stream (of the default level), priority levels set,
--       the queue's event stream
-- ARGV: "enqueue", payload, the entry's field names (space-separated: the table in
--       aqueue/_message.py) | "finish", status, outcome field, outcome value, result ttl,
--       events kept (0: none)
-- Returns 1 when released, 0 when it was not waiting any more.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local wait = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[3])
if redis.call('HGET', KEYS[1], 'status') == 'cancelled' then
  -- Cancelled while it waited: it never runs.
  return 0
end
if ARGV[1] == 'enqueue' then
  -- The wait hash holds the job's entry (under the entry's field names, beside its own
  -- fields): all of it goes into the stream, so every option set at enqueue holds.
  local codes = {}
  for code in string.gmatch(ARGV[3], '%S+') do
    codes[code] = true
  end
  local fields, stream = {'p', ARGV[2]}, KEYS[4]
  for i = 1, #wait, 2 do
    local name, value = wait[i], wait[i + 1]
    if codes[name] and name ~= 'p' and value ~= '' then
      fields[#fields + 1] = name
      fields[#fields + 1] = value
      if name == 'l' and string.match(value, '^[0-46-9]$') then
        -- A priority level: its own stream, as enqueue.lua writes it.
        stream = KEYS[4] .. ':' .. value
        redis.call('SADD', KEYS[5], value)
      end
    end
  end
  redis.call('XADD', stream, '*', unpack(fields))
  redis.call('HSET', KEYS[1], 'status', 'queued')
  return 1
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[1], 'status', ARGV[2], ARGV[3], ARGV[4], 'finished_at', now)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.pcall('PUBLISH', KEYS[1], ARGV[2])
local spec = {}
for i = 1, #wait, 2 do
  spec[wait[i]] = wait[i + 1]
end
emit(KEYS[6], ARGV[6], ARGV[2], spec['j'], spec['t'])
return 1
