-- The removal the late-contact scripts share (run before each of them): an email's entry, its meta,
-- its place in the since zset and in each of its addresses' sets; and the expiry of the emails
-- that have waited too long.
-- KEYS[1]  the workspace's waiting emails (a hash: event id -> the message to release)
-- KEYS[2]  their meta (a hash: event id -> JSON with `addresses` and `sent`)
-- KEYS[3]  since when each waits (a sorted set: event id -> seconds since the epoch)
-- KEYS[4]  the workspace's counts (a hash: waited, released, expired, dropped)
-- remove(id, prefix): `prefix` names the address sets (prefix .. address -> event ids)
-- expire(before, prefix): removes the emails waiting since before `before`; returns how many
local function remove(id, prefix)
    local meta = redis.call('HGET', KEYS[2], id)
    if meta then
        local ok, decoded = pcall(cjson.decode, meta)
        if ok and type(decoded) == 'table' and type(decoded['addresses']) == 'table' then
            for _, address in ipairs(decoded['addresses']) do redis.call('SREM', prefix .. address, id) end
        end
    end
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
end
local function expire(before, prefix)
    local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. before)
    for _, id in ipairs(old) do remove(id, prefix) end
    if #old > 0 then redis.call('HINCRBY', KEYS[4], 'expired', #old) end
    return #old
end
