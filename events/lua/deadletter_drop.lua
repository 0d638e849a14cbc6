-- Removes the given dead letters that retention still says go: unchanged since they were read,
-- and older than the cutoff or beyond the bucket's count cap. With ARGV[3] == '1' each one is
-- counted in the dropped hash by its error code, found as text: the record writes `error_code`
-- before the event, and inside a JSON string every quote is escaped, so the first match is the
-- record's own field.
-- KEYS[1]  the bucket's entries (a hash: id -> record JSON)
-- KEYS[2]  the bucket's entries by last failure (a sorted set: id -> time)
-- KEYS[3]  the bucket's dropped counts (a hash: error code -> entries dropped)
-- KEYS[4]  the bucket's cause index (a hash: id -> its cause's key and first failure), which forgets the dropped ones
-- ARGV[1]  the age cutoff (a last failure before it is too old)
-- ARGV[2]  the most entries the bucket keeps
-- ARGV[3]  '1' to count the dropped entries by error code, '0' not to
-- ARGV[4…] pairs: an entry's id, then its score as read
-- Returns the error codes of the entries dropped ('UNKNOWN' where none was found).
local dropped = {}
local cutoff, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 4, #ARGV, 2 do
  local id, seen = ARGV[i], tonumber(ARGV[i + 1])
  local score = tonumber(redis.call('ZSCORE', KEYS[2], id))
  if score and score == seen and (score < cutoff or redis.call('ZCARD', KEYS[2]) > cap) then
    local code = 'UNKNOWN'
    if ARGV[3] == '1' then
      local raw = redis.call('HGET', KEYS[1], id)
      if raw then
        local _, stop = string.find(raw, '"error_code":"', 1, true)
        local found = stop and string.match(raw, '^[%w_%.%-]+', stop + 1)
        if found then code = found end
      end
      redis.call('HINCRBY', KEYS[3], code, 1)
    end
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[4], id)
    table.insert(dropped, code)
  end
end
return dropped
