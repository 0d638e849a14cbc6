-- Ends a batch's writes in one call: each written event's ledger entry is set, and the pending
-- marks of those and of the events Salesforce refused (nothing was written) are cleared.
-- ARGV[1]  the key prefix of the ledger entries (the event id follows it)
-- ARGV[2]  the key prefix of the pending marks
-- ARGV[3]  seconds an entry lives
-- ARGV[4]  the written events, as a JSON list of [event id, entry] pairs
-- ARGV[5]  the refused events' ids, as a JSON list
local done, pending, ttl = ARGV[1], ARGV[2], ARGV[3]
for _, pair in ipairs(cjson.decode(ARGV[4])) do
    redis.call('SET', done .. pair[1], pair[2], 'EX', ttl)
    redis.call('DEL', pending .. pair[1])
end
for _, id in ipairs(cjson.decode(ARGV[5])) do
    redis.call('DEL', pending .. id)
end
return 0
