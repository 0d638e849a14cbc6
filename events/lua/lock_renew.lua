-- Extends a lock's lifetime only while it is still held by the caller.
-- KEYS[1]  the lock (a string key holding its holder's token)
-- ARGV[1]  the caller's token
-- ARGV[2]  the new lifetime, in milliseconds
-- Returns 1 when the lock was extended, 0 when it is no longer the caller's.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
