-- Shared by the scripts that change a job's state (enqueue, wait, start, finish, unblock,
-- cancel, purge, replay): prepended to their source. Each transition is told in the queue's
-- event stream (aqueue/_events.py) in the same step that makes it, so a reader sees an event
-- exactly when the change happened.

-- Add one event to the queue's bounded event stream; a limit of 0: the app keeps no events.
-- The entry's id tells when it happened; the stream's key tells the queue. (Whole words for
-- field names: an event is no job entry, and 10,000 of them per queue weigh little.)
local function emit(stream, limit, kind, job, task, worker)
  if tonumber(limit) > 0 then
    redis.call('XADD', stream, 'MAXLEN', '~', limit, '*', 'type', kind, 'job', job,
      'task', task or '', 'worker', worker or '')
  end
end
