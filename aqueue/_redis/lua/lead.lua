-- The leader of a queue's housekeeping (see poll.lua) keeps leading between its looks: a leader
-- that hears the queue's notices learns nothing more from a look until its next job is due, so
-- it only renews its leadership, if it still holds it (PEXPIRE needs no memory: a leader keeps
-- leading at maxmemory).
-- Returns 1 when renewed, 0 when another worker leads or none does (a look takes it over).
local leader = KEYS[1]
local worker = ARGV[1]
-- ms the leadership lasts unless renewed again
local lead_ms = ARGV[2]
if redis.call('GET', leader) ~= worker then
  return 0
end
return redis.call('PEXPIRE', leader, lead_ms)
