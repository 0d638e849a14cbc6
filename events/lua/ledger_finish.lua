-- Ends a batch's writes in one call: each written event's ledger entry is set, and the pending
-- marks of those and of the events Salesforce refused (nothing was written) are cleared.
-- KEYS[1..n]     the ledger entries of the n written events
-- KEYS[n+1..]    the pending marks to clear (the written events' and the refused ones')
-- ARGV[1]        seconds an entry lives
-- ARGV[2..n+1]   the written events' entries, in the order of their KEYS
local ttl, written = ARGV[1], #ARGV - 1
for i = 1, written do
    redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ttl)
end
for i = written + 1, #KEYS do
    redis.call('DEL', KEYS[i])
end
return written
