-- Shared by the scripts that may meet a queued job which has no record yet (start, cancel,
-- depend): prepended to their source.
-- A job enqueued to run at once keeps no record key while it waits: its status lives in a field
-- of one of its queue's small "queued" hashes (the record key's id part -> its stream entry's
-- id, then " <level>" for a priority level's stream), a quarter of what a record key with a TTL
-- costs. The entry id tells when it was enqueued, the entry its task. The script that changes
-- the job's status first makes the record from them and removes the field, in the same step.

-- The job's place in its "queued" hash, or nil when it has none (it has a record, or no
-- status at all).
local function queued_state(record, queued)
  local prefix, id = string.match(record, '^(.*):job:(.*)$')
  local value = id and redis.call('HGET', queued, id)
  if not value then
    return nil
  end
  local entry, level = string.match(value, '^(%S+) ?(.*)$')
  return {prefix = prefix, id = id, entry = entry, level = level,
    enqueued_at = string.match(entry, '^(%d+)')}
end

-- Make the record of a job found by queued_state(), and remove its field. task: its task
-- name when the caller has its entry at hand (nil: read from the entry); status: "queued"
-- unless given, with more field/value pairs after it.
local function record_queued(record, queued, state, ttl, task, status, ...)
  if not task then
    -- Same hash tag as the record, so the same Cluster slot. (Costs as much as the rest.)
    local stream = state.prefix .. ':stream' .. (state.level ~= '' and ':' .. state.level or '')
    local found = redis.call('XRANGE', stream, state.entry, state.entry)[1]
    for i = 1, found and #found[2] or 0, 2 do
      if found[2][i] == 't' then
        task = found[2][i + 1]
      end
    end
  end
  redis.call('HSET', record, 'status', status or 'queued', 'enqueued_at', state.enqueued_at,
    'task', task or '', ...)
  redis.call('EXPIRE', record, ttl)
  redis.call('HDEL', queued, state.id)
end
