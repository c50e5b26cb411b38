-- Read new entries from a queue's priority streams in the order given, until the queue's share
-- of the worker's free slots is filled. In one step, so that while slots are scarce a lower
-- level's entry is never taken before a higher level's (separate reads could each take some of
-- both), and never more entries than the share (the worker could not start them).
-- No BLOCK here (scripts cannot block): the worker blocks with XREADGROUP when this finds none.
-- KEYS: the queue's streams in read order (highest level first, or lowest first when the
--       worker lets low levels through)
-- ARGV: group, consumer, most entries in all
-- Returns {stream, entries} pairs, as XREADGROUP replies.
local left = tonumber(ARGV[3])
local reply = {}
for _, stream in ipairs(KEYS) do
  if left <= 0 then
    break
  end
  local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', left,
    'STREAMS', stream, '>')
  if read then
    reply[#reply + 1] = read[1]
    left = left - #read[1][2]
  end
end
return reply
