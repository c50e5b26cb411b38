-- A worker's look at one of its queues, in one call: the jobs of the delayed set that are due
-- (on the server's clock, so a worker with a skewed clock cannot fire work early), when the next
-- one is due, how many priority levels are in use, which running jobs were cancelled since it
-- last looked (the cancel script writes that set), whether the queue is paused, and who leads the
-- queue's housekeeping.
-- The leader (one worker per queue at a time) promotes due jobs and claims lapsed entries; it
-- looks when the next job is due, and each look renews its leadership (as lead.lua does in
-- between). The others look only now and then: changes reach them on pub/sub (see
-- _prelude.lua), and a look reads what they missed while not listening, moves the jobs a
-- silent leader left due (a grace after their due time, when no promotion was told: see
-- promote.lua), and takes the leadership over once the leader's lapsed.
-- Due jobs are only found here; promote.lua moves them, with their records in its KEYS (the
-- worker reads each member's job id: unpacking them here cost the server more than the rest
-- of the look).
-- Returns {due members, ms until the next due job or -1 when none waits, levels in use
--          besides the default, next cursor, 1 when the queue is paused else 0, 1 when this
--          worker leads the queue else 0, ms the current leadership has left, the server's
--          time in ms (the delayed channel's notices give due times on its clock), ids of
--          jobs cancelled since the cursor...}.
local delayed = KEYS[1]
local levels = KEYS[2]
local cancelled = KEYS[3]
local paused = KEYS[4]
-- the name of the worker that leads the queue's housekeeping, expiring unless renewed
local leader = KEYS[5]
-- most due members to return
local batch = tonumber(ARGV[1])
-- cancel time in ms from the previous call (0 on the first: the last hour)
local cursor = tonumber(ARGV[2])
-- this worker's name
local worker = ARGV[3]
-- ms a leadership lasts unless renewed; 0: look only, never lead (a worker that stops)
local lead_ms = tonumber(ARGV[4])
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, batch)
local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local wait = -1
if #first > 0 then
  wait = math.max(0, tonumber(first[2]) - now)
end
if cursor == 0 then
  -- A worker's first look goes back as far as the cancel script keeps ids (an hour): its
  -- fetcher may have started a job cancelled a moment before, and a fire-and-forget job
  -- cancelled before this worker started must not start on it.
  cursor = now - 3600000
end
-- Inclusive, and the next look starts from this script's own time: a cancel later in this same
-- ms is not missed, and what was read is not read again (beyond that one ms).
local ids = redis.call('ZRANGEBYSCORE', cancelled, cursor, '+inf', 'WITHSCORES', 'LIMIT', 0, 10000)
-- Taken when nobody holds it (the leader resigned, or went silent for lead_ms), else renewed
-- by its holder.
local holder = redis.call('GET', leader)
local leads, left = 0, lead_ms
if lead_ms > 0 and holder == worker then
  -- PEXPIRE needs no memory: a leader keeps leading (and claiming) at maxmemory.
  redis.call('PEXPIRE', leader, lead_ms)
  leads = 1
elseif lead_ms > 0 and not holder then
  -- Taking it writes a key, which a server at maxmemory refuses: then this look is a
  -- follower's, and the rest of it (due jobs, cancels) is still answered.
  local taken = redis.pcall('SET', leader, worker, 'PX', lead_ms)
  leads = type(taken) == 'table' and taken.ok and 1 or 0
  left = leads == 1 and lead_ms or 0
else
  left = redis.call('PTTL', leader)
end
local reply = {due, wait, redis.call('SCARD', levels), now, redis.call('EXISTS', paused), leads,
  left, now}
for i = 1, #ids, 2 do
  reply[#reply + 1] = ids[i]
end
if #ids == 20000 then
  -- A full page: go on from its last score (or past it, if the whole page shares one ms).
  local last = tonumber(ids[#ids])
  reply[4] = last > cursor and last or cursor + 1
end
return reply
