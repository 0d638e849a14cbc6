-- Stores a CRM cycle's watermark only while the cycle still holds its workspace's lock (a cycle
-- that lost the lock must not move the watermark another cycle now owns).
-- KEYS[1]  the workspace's CRM cycle lock
-- KEYS[2]  the workspace's watermark hash
-- ARGV[1]  the cycle's lock token
-- ARGV[2]  the watermark's SystemModstamp, milliseconds since the epoch (field `stamp_ms`)
-- ARGV[3]  when the org was read, milliseconds since the epoch (field `read_at_ms`)
-- ARGV[4]  the watermark as ISO 8601 text (field `stamp`)
-- Returns 1 when stored, 0 when the lock is no longer held.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'stamp_ms', ARGV[2], 'read_at_ms', ARGV[3], 'stamp', ARGV[4])
return 1
