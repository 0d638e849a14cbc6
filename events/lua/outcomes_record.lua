-- Adds a batch's outcomes to a workspace's history and counts, in one call.
-- KEYS[1]  the workspace's recent outcomes (a stream, trimmed to about ARGV[1] entries)
-- KEYS[2]  its counts (a hash: "<event type>|<outcome>" -> events)
-- ARGV[1]  entries the stream keeps (approximately)
-- ARGV[2]  the entries, as a JSON list of flat [field, value, field, value, ...] lists, in order
-- ARGV[3]  the counts to add, as a JSON list of [field, increment] pairs
-- Returns the number of entries added.
local entries = cjson.decode(ARGV[2])
for _, fields in ipairs(entries) do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
end
for _, pair in ipairs(cjson.decode(ARGV[3])) do
    redis.call('HINCRBY', KEYS[2], pair[1], pair[2])
end
return #entries
