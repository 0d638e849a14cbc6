-- Deletes a lock only while it is still held by the caller (a lock that expired and was taken
-- by someone else is left to its new holder).
-- KEYS[1]  the lock (a string key holding its holder's token)
-- ARGV[1]  the caller's token
-- Returns 1 when the lock was deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
