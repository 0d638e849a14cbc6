-- Keeps emails that wait for their contact (an email already waiting keeps its place and its
-- since), expires the ones that have waited too long and drops the oldest beyond the most that may wait.
-- KEYS[1]  the workspace's waiting emails (a hash: event id -> the message to release)
-- KEYS[2]  their meta (a hash: event id -> JSON with `addresses` and `sent`)
-- KEYS[3]  since when each waits (a sorted set: event id -> seconds since the epoch)
-- KEYS[4]  the workspace's counts (a hash: waited, released, expired, dropped)
-- ARGV[1]  the prefix of the address sets
-- ARGV[2]  expire what waits since before this (seconds since the epoch)
-- ARGV[3]  the most emails that may wait
-- ARGV[4…] per email 5 values: event id, since, message, meta JSON, addresses as a JSON list
-- Returns {added, expired, dropped}.
local prefix, added = ARGV[1], 0
for i = 4, #ARGV, 5 do
    local id = ARGV[i]
    if redis.call('HEXISTS', KEYS[1], id) == 0 then
        redis.call('HSET', KEYS[1], id, ARGV[i + 2])
        redis.call('HSET', KEYS[2], id, ARGV[i + 3])
        redis.call('ZADD', KEYS[3], ARGV[i + 1], id)
        for _, address in ipairs(cjson.decode(ARGV[i + 4])) do redis.call('SADD', prefix .. address, id) end
        added = added + 1
    end
end
if added > 0 then redis.call('HINCRBY', KEYS[4], 'waited', added) end
local expired = expire(ARGV[2], prefix)
local dropped = 0
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[3])
if over > 0 then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, over - 1)
    for _, id in ipairs(oldest) do remove(id, prefix) end
    dropped = #oldest
    redis.call('HINCRBY', KEYS[4], 'dropped', dropped)
end
return {added, expired, dropped}
