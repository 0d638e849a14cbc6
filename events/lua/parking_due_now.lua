-- Makes every entry of a parking lot due now (what parked them has ended).
-- KEYS[1]  the workspace's lot (a sorted set: entry -> release time, seconds since the epoch)
-- ARGV[1]  now
-- Returns how many entries were moved forward.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
for _, member in ipairs(members) do redis.call('ZADD', KEYS[1], ARGV[1], member) end
return #members
