-- A stopping worker gives up leading its queue's housekeeping (see poll.lua), if it still
-- leads it, and says so on the leader key's channel: the other workers look at once and one
-- of them takes over, rather than leave delayed jobs waiting until the leadership expires.
-- Returns 1 when this worker led the queue.
local leader = KEYS[1]
local worker = ARGV[1]
if redis.call('GET', leader) ~= worker then
  return 0
end
redis.call('DEL', leader)
redis.pcall('SPUBLISH', leader, worker)
return 1
