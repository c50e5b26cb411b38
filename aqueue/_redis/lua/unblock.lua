-- Release a waiting job exactly once: add its stream entry (with the payload that carries its
-- dependencies' results), or finish a parent record with its outcome. The wait hash goes in the
-- same step, so a second caller (a redelivered dependency, a racing worker) does nothing.
-- A release is no event (the job was told enqueued when it began to wait, wait.lua); a finish
-- is told with its status, as finish.lua tells a run's end.
-- Returns 1 when released, 0 when it was not waiting any more.
local record = KEYS[1]
local wait = KEYS[2]
local pending = KEYS[3]
local levels = KEYS[4]
local events = KEYS[5]
local streams = 6  -- KEYS[6...]: streams
-- "enqueue" (with payload and codes) or "finish" (with the rest)
local action = ARGV[1]
local payload = ARGV[2]
-- the entry's field names (space-separated: the table in aqueue/_redis/_wire.py)
local codes = ARGV[3]
local status = ARGV[4]
local outcome_field = ARGV[5]
local outcome = ARGV[6]
local result_ttl = ARGV[7]
local events_limit = ARGV[8]
if redis.call('EXISTS', wait) == 0 then
  return 0
end
local spec = redis.call('HGETALL', wait)
redis.call('DEL', wait, pending)
if redis.call('HGET', record, 'status') == 'cancelled' then
  -- Cancelled while it waited: it never runs.
  return 0
end
if action == 'enqueue' then
  -- The wait hash holds the job's entry (under the entry's field names, beside its own
  -- fields): all of it goes into the stream, so every option set at enqueue holds.
  local known = {}
  for code in string.gmatch(codes, '%S+') do
    known[code] = true
  end
  local fields, level = {FIELD.payload, payload}, nil
  for i = 1, #spec, 2 do
    local name, value = spec[i], spec[i + 1]
    if known[name] and name ~= FIELD.payload and value ~= '' then
      fields[#fields + 1] = name
      fields[#fields + 1] = value
      if name == FIELD.level then
        level = value
      end
    end
  end
  -- A priority level: its own stream, as enqueue.lua writes it.
  add_entry(streams, levels, level, fields)
  redis.call('HSET', record, 'status', 'queued')
  return 1
end
redis.call('HSET', record, 'status', status, outcome_field, outcome, 'finished_at', now_ms())
redis.call('EXPIRE', record, result_ttl)
tell(record, status)
local named = {}
for i = 1, #spec, 2 do
  named[spec[i]] = spec[i + 1]
end
emit(events, events_limit, status, named[FIELD.job_id], named[FIELD.task])
return 1
