-- Marks a batch's events as being written ("pending"), in one call.
-- KEYS[1..n]  the pending marks, one per event
-- ARGV[1]     seconds a mark lives
for i = 1, #KEYS do
    redis.call('SET', KEYS[i], '1', 'EX', ARGV[1])
end
return #KEYS
