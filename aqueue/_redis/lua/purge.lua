-- Drop queued jobs of one stream: entries no worker has read yet (those after the group's last
-- delivered id), found by the caller, dropped here in one step, so that each entry is either
-- read before (and runs) or never. Running jobs (entries read and pending) are not touched.
-- Each dropped job ends as a cancel leaves it: its record says cancelled (result() raises
-- JobCancelled, status() tells), waiters are woken, its uniqueness key is released.
-- Each job that had not ended is told cancelled in the queue's event stream.
-- Returns {entries dropped, ids of the jobs dropped...}.
local stream = KEYS[1]
local events = KEYS[2]
-- per entry, in order: the record and "queued" hash of the job it names (any keys when it
-- names none), and the uniqueness key it names (any key when it names none)
local job_keys = 3  -- KEYS[3...]: entries
local group = ARGV[1]
-- JSON: type and message
local error_value = ARGV[2]
-- seconds to keep the record
local ttl = ARGV[3]
local events_limit = ARGV[4]
local entry_ids = 5  -- ARGV[5...]: entries
-- An entry id as two numbers (ms, sequence), for comparing.
local function parsed(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local info = group_info(stream, group)
local read_ms, read_seq = -1, -1
if info then
  read_ms, read_seq = parsed(info['last-delivered-id'])
end
local now = now_ms()
local reply = {0}
local last_dropped
for i = entry_ids, #ARGV do
  local id = ARGV[i]
  local ms, seq = parsed(id)
  local unread = ms and (ms > read_ms or (ms == read_ms and seq > read_seq))
  local entry = unread and redis.call('XRANGE', stream, id, id)[1]
  if entry then
    redis.call('XDEL', stream, id)
    reply[1] = reply[1] + 1
    last_dropped = id
    local k = job_keys + (i - entry_ids) * 3
    local record, queued, unique = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    local fields = {}
    for f = 1, #entry[2], 2 do
      fields[entry[2][f]] = entry[2][f + 1]
    end
    local job_id = fields[FIELD.job_id]
    local hex = job_id and string.match(job_id, ':(.*)$')
    if hex and string.match(record, ':job:(.*)$') == hex then
      local status = redis.call('HGET', record, 'status')
      if status == 'scheduled' then
        -- Unread in the stream: a scheduled job moved there (see poll.lua) is queued.
        status = 'queued'
      end
      local state = not status and queued_state(record, queued)
      if state then
        record_queued(record, queued, state, ttl, fields[FIELD.task] or '', 'cancelled',
          'error', error_value, 'finished_at', now)
      elseif status == 'queued' then
        redis.call('HSET', record, 'status', 'cancelled', 'error', error_value,
          'finished_at', now)
        redis.call('EXPIRE', record, ttl)
      end
      if fields[FIELD.unique_key] == unique and redis.call('GET', unique) == job_id then
        redis.call('DEL', unique)
      end
      tell(record, 'cancelled')
      if not status or status == 'queued' then
        -- (A job that keeps no record has no status: its entry was all there was of it.)
        emit(events, events_limit, 'cancelled', job_id, fields[FIELD.task])
      end
      reply[#reply + 1] = job_id
    end
  end
end
-- The group's position moves past the dropped entries (the caller found them in order from it,
-- so no entry is left between): the entries it has not read are then all in the stream, and
-- its lag counts the queued jobs (see unfinished() in the prelude). Deleted ahead of it, they
-- would make the server count the lag anew, or, before Redis 7.4, count them as queued ever
-- after.
if info and last_dropped then
  local read = info['entries-read']
  if read then
    redis.call('XGROUP', 'SETID', stream, group, last_dropped, 'ENTRIESREAD', read + reply[1])
  else
    redis.call('XGROUP', 'SETID', stream, group, last_dropped)
  end
end
return reply
