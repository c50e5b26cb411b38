-- The prelude: since Lua scripts cannot import, the idioms several scripts share live here,
-- once, as functions (and nothing else), and each script gets those it calls put in front of it
-- (after its shebang line, if it has one): Lua makes a closure per function a script defines,
-- on every call. Each script then
-- names its KEYS and ARGV at its top, in the order its builder in aqueue/_redis/_calls.py
-- emits them (a test holds the two to each other); a block of keys is named by the index it
-- starts at ("local streams = 4  -- KEYS[4...]"). No key is named in Lua: every key a script
-- touches arrives in KEYS, so Redis Cluster can route the call and check it.
-- A job's entry fields are named, never spelled: FIELD.task stands for the task field's code
-- in the table in aqueue/_redis/_wire.py, put in its place when the scripts load.

-- The server's time in ms: due times, expiries and timestamps are on its clock, never on a
-- client's, so a skewed worker cannot fire work early.
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- Tells a job's watchers (result(), events()) that its record changed, on the channel named
-- as the record's key. Sharded pub/sub: on a Redis Cluster the message goes to the nodes of the
-- record's slot only, where plain PUBLISH goes to every node. Never fails the script: the change
-- matters more than its notice, and a watcher that subscribes reads the record anyway.
local function tell(record, what)
  redis.pcall('SPUBLISH', record, what)
end

-- The stream of a priority level, from the ten level streams (lowest first) that a script
-- takes in KEYS from index `streams`, and whether it is a level of its own. A level that is no
-- single digit (an entry written by another program) is the default, 5, the queue's own stream.
local function level_stream(streams, level)
  local n = level and string.match(level, '^%d$') and tonumber(level) or 5
  return KEYS[streams + n], n ~= 5
end

-- Whether `consumer` owns the pending entry (its pending row then), else nil. XACK does not
-- check who owns an entry, so every write for a delivery checks this first (fencing): a worker
-- whose lease lapsed must not ack away or overwrite the new owner's delivery.
local function owned(stream, group, entry, consumer)
  local pending = redis.call('XPENDING', stream, group, entry, entry, 1)[1]
  if pending and pending[2] == consumer then
    return pending
  end
  return nil
end

-- The consumer group's fields as XINFO GROUPS tells them (name -> value), or nil when the
-- stream or the group does not exist. Read by name, not by place: servers differ in what a row
-- holds (Redis 7.0 added entries-read and lag) and may add more.
local function group_info(stream, group)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  for _, row in ipairs(ok and groups or {}) do
    local info = {}
    for i = 1, #row, 2 do
      info[row[i]] = row[i + 1]
    end
    if info['name'] == group then
      return info
    end
  end
  return nil
end

-- A stream's unfinished jobs: how many wait (not delivered yet) and how many run (delivered,
-- not acked). Its length counts more: finished entries wait there for the trim that drops them
-- (finish.lua leaves those acked less than a second after the oldest running one).
-- The waiting ones are the group's lag, where the server tells it (it says nil while an entry
-- after the group's position was deleted: a purge, or a finished entry deleted at once) and
-- it is possible (at most the length less the running ones). Otherwise they are counted
-- exactly: the length less the entries up to the group's position (the running ones and the
-- finished ones left, so at most the running ones and a second's enqueues are read).
local function unfinished(stream, group)
  local length = redis.call('XLEN', stream)
  local info = group_info(stream, group)
  if not info then
    return length, 0  -- no worker read the stream yet
  end
  local running = info['pending']
  local waiting = length - running
  local lag = info['lag']
  if waiting == 0 then
    return 0, running
  end
  if lag and lag <= waiting then
    return lag, running
  end
  return length - #redis.call('XRANGE', stream, '-', info['last-delivered-id']), running
end

-- A table that finds the value of each key it is asked for once, with find(key), and keeps it:
-- digits read as a number, or a number formatted as digits, cost about as much as a
-- redis.call, and the jobs of a call mostly share the few values they convert.
local function memo(find)
  return setmetatable({}, {__index = function(found, key)
    local value = find(key)
    found[key] = value
    return value
  end})
end

-- An entry id as its two numbers (ms, sequence), for comparing.
local function id_numbers(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

-- Whether entry id a (as its two numbers) comes before b.
local function id_before(a_ms, a_seq, b_ms, b_seq)
  return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

-- owned() for a batch of entries: the pending row of each entry that `consumer` owns, by id,
-- from `least` to `greatest` (the batch's least and greatest ids, "" for an empty batch). One
-- XPENDING over that range finds them all: one per entry cost more than the rest of a
-- fire-and-forget job. The caller finds the range: parsing each id here cost the server more.
-- `most`: at most how many of the consumer's entries lie in that range.
local function owned_rows(stream, group, least, greatest, consumer, most)
  local rows = {}
  if least ~= '' then
    for _, row in ipairs(redis.call('XPENDING', stream, group, least, greatest, most,
        consumer)) do
      rows[row[1]] = row
    end
  end
  return rows
end

-- The job's member of the delayed set, found by its score (`due`, its record's due_at), or nil
-- when none of the members of that score names the job (it was moved into its stream, or
-- cancelled). Members of one enqueue_many share their score: only those are unpacked.
local function delayed_member(delayed, due, job_id)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', delayed, due, due)) do
    local ok, fields = pcall(cmsgpack.unpack, member)
    for i = 1, ok and type(fields) == 'table' and #fields or 0, 2 do
      if fields[i] == FIELD.job_id and fields[i + 1] == job_id then
        return member
      end
    end
  end
  return nil
end

-- Whether a job's status is final: nothing changes it any more (but a replay of a failure).
local function ended(status)
  return status == 'succeeded' or status == 'failed' or status == 'cancelled'
end

-- Each change of a job's state is told in the queue's event stream (aqueue/_events.py) in the
-- same step that makes it, so a reader sees an event exactly when the change happened. A limit
-- of 0: the app keeps no events. The entry's id tells when it happened; the stream's key tells
-- the queue. (Whole words for field names: an event is no job entry, and 10,000 of them per
-- queue weigh little.)
local function emit(stream, limit, kind, job, task, worker)
  if tonumber(limit) > 0 then
    redis.call('XADD', stream, 'MAXLEN', '~', limit, '*', 'type', kind, 'job', job,
      'task', task or '', 'worker', worker or '')
  end
end

-- A job enqueued to run at once keeps no record key while it waits: its status lives in a field
-- of one of its queue's small "queued" hashes (the record key's id part -> its stream entry's
-- id, then " <level>" for a priority level's stream), a quarter of what a record key with a TTL
-- costs. The entry id tells when it was enqueued, the entry its task. The script that changes
-- the job's status first makes the record from them and removes the field, in the same step.

-- The job's place in its "queued" hash, or nil when it has none (it has a record, or no status
-- at all).
local function queued_state(record, queued)
  local id = string.match(record, ':job:(.*)$')
  local value = id and redis.call('HGET', queued, id)
  if not value then
    return nil
  end
  local entry, level = string.match(value, '^(%S+) ?(.*)$')
  return {id = id, entry = entry, level = level, enqueued_at = string.match(entry, '^(%d+)')}
end

-- The task named by a stream entry ("" when it has none or is gone).
local function task_of(stream, entry)
  local found = redis.call('XRANGE', stream, entry, entry)[1]
  for i = 1, found and #found[2] or 0, 2 do
    if found[2][i] == FIELD.task then
      return found[2][i + 1]
    end
  end
  return ''
end

-- Make the record of a job found by queued_state(), and remove its field (unless state.removed
-- says it is gone already). status: "queued" unless given, with more field/value pairs after it.
local function record_queued(record, queued, state, ttl, task, status, ...)
  redis.call('HSET', record, 'status', status or 'queued', 'enqueued_at', state.enqueued_at,
    'task', task, ...)
  redis.call('EXPIRE', record, ttl)
  if not state.removed then
    redis.call('HDEL', queued, state.id)
  end
end

-- Workers do not poll for what changes rarely: a change is announced on a pub/sub channel named
-- after the key it changed (see "Channels" in aqueue/_redis/_keys.py), by sharded pub/sub like
-- tell(): on a Redis Cluster it goes to the nodes of the queue's slot only.

-- Putting members in the delayed set, for a script that may put several: add(due, member)
-- puts `member` in, due at `due` (ms, a number or its digits), and wake() then tells the
-- queue's workers the earliest due time when a member is due before every other one: the
-- leader, which promotes, sleeps until the earliest due time it knows of, and the others look
-- only if that passes with no promotion told (poll.lua). One look at the set's first member
-- and at most one notice, however many are put in. Digits go to ZADD as they are (a number
-- passed to redis.call is formatted anew each time, a printf), and are read as a number once
-- for the members that share them (a batch's retries mostly do).
local function delays(delayed)
  local first, earliest, last, last_ms
  local function add(due, member)
    if due ~= last then
      last, last_ms = due, tonumber(due)
    end
    if not first then
      local found = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
      first = #found == 0 and math.huge or tonumber(found[2])
    end
    redis.call('ZADD', delayed, due, member)
    if last_ms < first and (not earliest or last_ms < earliest) then
      earliest = last_ms
    end
  end
  local function wake()
    if earliest then
      redis.pcall('SPUBLISH', delayed, string.format('%d', earliest))
    end
  end
  return add, wake
end

-- Put `member` in the delayed set, due at `due` (ms), as delays() does.
local function delay(delayed, due, member)
  local add, wake = delays(delayed)
  add(due, member)
  wake()
end

-- Which of a call's `count` jobs someone follows (job.events(), counted in the queue's
-- `followed` set), as a set of their ids (job_id(i): the i-th job's): only those are told of
-- the changes a result waiter does not wait for, since a PUBLISH costs as much as a small
-- command even when nobody listens. Mostly nobody follows any job of the queue: one look for a
-- batch, and the ids are gathered only when someone does.
local function followed_among(followed, count, job_id)
  local found = {}
  if count > 0 and redis.call('EXISTS', followed) == 1 then
    local job_ids = {}
    for i = 1, count do
      job_ids[i] = job_id(i)
    end
    for i, follows in ipairs(redis.call('ZMSCORE', followed, unpack(job_ids))) do
      if follows and tonumber(follows) > 0 then
        found[job_ids[i]] = true
      end
    end
  end
  return found
end

-- Add a priority level to the queue's levels set; a new one tells the workers to read its stream.
local function add_level(levels, level)
  if redis.call('SADD', levels, level) == 1 then
    redis.pcall('SPUBLISH', levels, level)
  end
end

-- Add a job's entry (its fields, a flat list) again to the stream of its priority level (nil:
-- the default), the level noted as in use: a promotion, a dependency's release, a replay.
local function add_entry(streams, levels, level, fields)
  local stream, own = level_stream(streams, level)
  if own then
    add_level(levels, level)
  end
  redis.call('XADD', stream, '*', unpack(fields))
end
