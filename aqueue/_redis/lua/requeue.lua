-- Hand an unfinished entry back to the queue at once (graceful shutdown), instead of leaving it
-- pending until its lease lapses: a fresh copy goes to the stream's tail and the old entry is
-- acked, atomically, and only if this consumer still owns it.
-- Returns the new entry id, or false when the entry is no longer ours.
local stream = KEYS[1]
local record = KEYS[2]
local queued = KEYS[3]
local group = ARGV[1]
local consumer = ARGV[2]
local entry_id = ARGV[3]
if not owned(stream, group, entry_id, consumer) then
  return false
end
local entry = redis.call('XRANGE', stream, entry_id, entry_id)
redis.call('XACK', stream, group, entry_id)
redis.call('XDEL', stream, entry_id)
if #entry == 0 then
  return false
end
local new_id = redis.call('XADD', stream, '*', unpack(entry[1][2]))
if redis.call('HGET', record, 'status') == 'running' then
  redis.call('HSET', record, 'status', 'queued')
end
-- A job that never started (held unread at shutdown, or left to a worker that knows its task)
-- may keep its status in the "queued" hash, which names its entry (see queued_state): the new
-- one now, or the job's task and arguments could no longer be read while it waits.
local state = queued_state(record, queued)
if state and state.entry == entry_id then
  redis.call('HSET', queued, state.id, new_id .. (state.level ~= '' and ' ' .. state.level or ''))
end
return new_id
