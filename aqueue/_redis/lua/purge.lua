-- Drop the queued jobs of one stream: the entries no worker has read yet (those after the
-- group's last delivered id), in one step, so that each entry is either read before (and runs)
-- or never. Running jobs (entries read and pending) are not touched.
-- Each dropped job ends as a cancel leaves it: its record says cancelled (result() raises
-- JobCancelled, status() tells), waiters are woken, its uniqueness key is released. Records and
-- "queued" hashes are named from the job ids under the queue's prefix (the same hash tag, so
-- the same Cluster slot), as the promote script names records.
-- Each job that had not ended is told cancelled in the queue's event stream.
-- KEYS: stream, the queue's event stream
-- ARGV: group, queue key prefix, error value (JSON: type and message), seconds to keep the
--       record, most entries to drop, events kept (0: none)
-- Returns {entries dropped, ids of the jobs dropped...}.
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then
  return {0}  -- no stream: nothing queued
end
local after = '-'
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do
    info[group[i]] = group[i + 1]
  end
  if info['name'] == ARGV[1] then
    after = '(' .. info['last-delivered-id']
  end
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local entries = redis.call('XRANGE', KEYS[1], after, '+', 'COUNT', tonumber(ARGV[5]))
local reply = {#entries}
for _, entry in ipairs(entries) do
  redis.call('XDEL', KEYS[1], entry[1])
  local fields = {}
  for i = 1, #entry[2], 2 do
    fields[entry[2][i]] = entry[2][i + 1]
  end
  local job_id = fields['j']
  local hex = job_id and string.match(job_id, ':(.*)$')
  if hex then
    local record = ARGV[2] .. ':job:' .. hex
    local queued = ARGV[2] .. ':queued:' .. string.sub(hex, 1, 3)
    local status = redis.call('HGET', record, 'status')
    local state = not status and queued_state(record, queued)
    if state then
      record_queued(record, queued, state, ARGV[4], fields['t'], 'cancelled', 'error', ARGV[3],
        'finished_at', now)
    elseif status == 'queued' then
      redis.call('HSET', record, 'status', 'cancelled', 'error', ARGV[3], 'finished_at', now)
      redis.call('EXPIRE', record, ARGV[4])
    end
    local unique = fields['u']
    if unique and string.sub(unique, 1, #ARGV[2] + 8) == ARGV[2] .. ':unique:'
        and redis.call('GET', unique) == job_id then
      redis.call('DEL', unique)
    end
    redis.pcall('PUBLISH', record, 'cancelled')
    if not status or status == 'queued' then
      -- (A job that keeps no record has no status: its entry was all there was of it.)
      emit(KEYS[2], ARGV[6], 'cancelled', job_id, fields['t'])
    end
    reply[#reply + 1] = job_id
  end
end
return reply
