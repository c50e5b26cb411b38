-- Hand an unfinished entry back to the queue at once (graceful shutdown), instead of leaving it
-- pending until its lease lapses: a fresh copy goes to the stream's tail and the old entry is
-- acked, atomically, and only if this consumer still owns it.
-- KEYS: stream, job record, the job's "queued" hash
-- ARGV: group, consumer, entry id
-- Returns the new entry id, or false when the entry is no longer ours.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return false
end
local entry = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if #entry == 0 then
  return false
end
local new_id = redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
if redis.call('HGET', KEYS[2], 'status') == 'running' then
  redis.call('HSET', KEYS[2], 'status', 'queued')
end
-- A job that never started (held unread at shutdown, or left to a worker that knows its task)
-- may keep its status in the "queued" hash, which names its entry (see _queued.lua): the
-- new one now, or the job's task and arguments could no longer be read while it waits.
local id = string.match(KEYS[2], ':job:(.*)$')
local place = id and redis.call('HGET', KEYS[3], id)
if place and string.match(place, '^%S+') == ARGV[3] then
  local level = string.match(place, ' (.*)$')
  redis.call('HSET', KEYS[3], id, new_id .. (level and ' ' .. level or ''))
end
return new_id
