-- Leases a parking lot's due entries to one releaser: their release time is moved to the end of
-- the lease, so a releaser that dies before removing them lets another take them afterwards.
-- KEYS[1]  the workspace's lot (a sorted set: entry -> release time, seconds since the epoch)
-- ARGV[1]  now (entries due at or before it are taken)
-- ARGV[2]  when the lease ends (the taken entries' new release time)
-- ARGV[3]  how many entries to take at most
-- Returns the taken entries, earliest first.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[2], member) end
return due
