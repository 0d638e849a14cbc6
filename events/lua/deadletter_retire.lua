-- Turns a dead letter into its replayed tombstone, unless it failed again since it was read.
-- KEYS[1]  the bucket's entries (a hash: id -> record JSON)
-- KEYS[2]  the bucket's entries by last failure (a sorted set: id -> time)
-- KEYS[3]  the bucket's replayed tombstones (a hash: id -> tombstone JSON)
-- KEYS[4]  the tombstones by replay time (a sorted set: id -> time)
-- KEYS[5]  the bucket's cause index (a hash: id -> its cause's key and first failure), which forgets the retired one
-- ARGV[1]  the dead letter's id
-- ARGV[2]  its last-failure score as read (a newer one means it failed again meanwhile)
-- ARGV[3]  the tombstone JSON
-- ARGV[4]  now
-- Returns 1 when retired, 0 when it failed again and stays a dead letter.
local score = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]))
if score and math.abs(score - tonumber(ARGV[2])) > 0.0005 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
return 1
