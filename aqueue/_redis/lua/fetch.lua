-- Read new entries from a queue's priority streams in the order given, until the queue's share
-- of the worker's free slots is filled. In one step, so that while slots are scarce a lower
-- level's entry is never taken before a higher level's (separate reads could each take some of
-- both), and never more entries than the share (the worker could not start them).
-- No BLOCK here (scripts cannot block): the worker blocks with XREADGROUP when this finds none.
-- Returns {stream, entries} pairs, as XREADGROUP replies.
-- in read order (highest level first, or lowest first when the worker lets low levels through)
local streams = 1  -- KEYS[1...]: streams
local group = ARGV[1]
local consumer = ARGV[2]
-- most entries in all
local count = tonumber(ARGV[3])
local left = count
local reply = {}
for i = streams, #KEYS do
  if left <= 0 then
    break
  end
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', left,
    'STREAMS', KEYS[i], '>')
  if read then
    reply[#reply + 1] = read[1]
    left = left - #read[1][2]
  end
end
return reply
