-- Marks a batch's events as being written ("pending"), in one call.
-- ARGV[1]  the key prefix of the pending marks (the event id follows it)
-- ARGV[2]  seconds a mark lives
-- ARGV[3]  the event ids, as a JSON list
local prefix, ttl = ARGV[1], ARGV[2]
for _, id in ipairs(cjson.decode(ARGV[3])) do
    redis.call('SET', prefix .. id, '1', 'EX', ttl)
end
return 0
