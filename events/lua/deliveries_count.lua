-- Counts one more delivery of each message of a batch, in one call.
-- KEYS[1..n]  the delivery counters, one per message
-- ARGV[1]     seconds a counter lives after its last delivery
-- Returns the counts, in the order of KEYS.
local counts = {}
for i = 1, #KEYS do
    counts[i] = redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return counts
