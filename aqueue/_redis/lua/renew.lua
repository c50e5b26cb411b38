#!lua flags=allow-oom
-- Renew the lease of entries this worker still runs: XCLAIM ... JUSTID resets their idle time
-- without counting a delivery. XCLAIM would also take an entry another worker claimed after
-- our lease lapsed, so each entry's owner is checked first. An entry deleted from the stream
-- (XTRIM or XDEL by hand) while its job runs is left out: XCLAIM would drop it from the
-- pending list, and the job's outcome would then be refused as a late ack. Left pending, the
-- outcome is recorded as usual, or, should this worker die, the id is dead-lettered by the
-- worker that claims it.
-- allow-oom (the shebang line must come first): renewal must work at maxmemory under
-- noeviction, or every running job would be claimed and run by a second worker while Redis
-- is full. It allocates nothing: XCLAIM ... JUSTID only resets existing pending entries.
-- Returns the ids another consumer owns now (ids no longer pending at all were just acked).
local stream = KEYS[1]
local group = ARGV[1]
local consumer = ARGV[2]
-- at most a few thousand: unpack has a limit
local entry_ids = 3  -- ARGV[3...]: entry_ids
local claim = {stream, group, consumer, 0}
local lost = {}
for i = entry_ids, #ARGV do
  local entry = ARGV[i]
  local pending = redis.call('XPENDING', stream, group, entry, entry, 1)
  if #pending == 1 then
    if pending[1][2] ~= consumer then
      lost[#lost + 1] = entry
    elseif #redis.call('XRANGE', stream, entry, entry) == 1 then
      claim[#claim + 1] = entry
    end
  end
end
if #claim > 4 then
  claim[#claim + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(claim))
end
return lost
