-- Release a waiting job exactly once: add its stream entry (with the payload that carries its
-- dependencies' results), or finish a parent record with its outcome. The wait hash goes in the
-- same step, so a second caller (a redelivered dependency, a racing worker) does nothing.
-- KEYS: job record, wait hash, pending set, stream (of the default level), priority levels set
-- ARGV: "enqueue", payload | "finish", status, outcome field, outcome value, result ttl
-- Returns 1 when released, 0 when it was not waiting any more.
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local w = redis.call('HMGET', KEYS[2], 'j', 't', 'r', 'o', 'l')
redis.call('DEL', KEYS[2], KEYS[3])
if redis.call('HGET', KEYS[1], 'status') == 'cancelled' then
  -- Cancelled while it waited: it never runs.
  return 0
end
if ARGV[1] == 'enqueue' then
  local fields = {'j', w[1], 't', w[2], 'p', ARGV[2], 'r', w[3]}
  if w[4] and w[4] ~= '' then
    fields[#fields + 1] = 'o'
    fields[#fields + 1] = w[4]
  end
  local stream = KEYS[4]
  if w[5] and string.match(w[5], '^[0-46-9]$') then
    -- A priority level: its own stream, as enqueue.lua writes it.
    fields[#fields + 1] = 'l'
    fields[#fields + 1] = w[5]
    stream = KEYS[4] .. ':' .. w[5]
    redis.call('SADD', KEYS[5], w[5])
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
return 1
