-- Moves every email waiting for one of the addresses that appeared into the workspace's retries lot,
-- due at once, in the order they were sent (scores just below now, 1 ms apart).
-- KEYS[1]  the workspace's waiting emails (a hash: event id -> the message to release)
-- KEYS[2]  their meta (a hash: event id -> JSON with `addresses` and `sent`)
-- KEYS[3]  since when each waits (a sorted set: event id -> seconds since the epoch)
-- KEYS[4]  the workspace's counts (a hash: waited, released, expired, dropped)
-- KEYS[5]  the workspace's retries lot (a sorted set: message -> when it is due)
-- ARGV[1]  the prefix of the address sets
-- ARGV[2]  expire what waits since before this (seconds since the epoch)
-- ARGV[3]  now (seconds since the epoch)
-- ARGV[4…] the addresses that appeared
-- Returns the released emails' event ids, in the order they were sent.
local prefix = ARGV[1]
expire(ARGV[2], prefix)
local seen, found = {}, {}
for i = 4, #ARGV do
    for _, id in ipairs(redis.call('SMEMBERS', prefix .. ARGV[i])) do
        if not seen[id] then
            seen[id] = true
            local meta = redis.call('HGET', KEYS[2], id)
            if meta then
                local sent = tonumber(cjson.decode(meta)['sent']) or 0
                found[#found + 1] = {id, sent}
            else
                redis.call('SREM', prefix .. ARGV[i], id)  -- left behind by an entry already gone
            end
        end
    end
end
table.sort(found, function(a, b) if a[2] ~= b[2] then return a[2] < b[2] end return a[1] < b[1] end)
local now, released = tonumber(ARGV[3]), {}
for n, pair in ipairs(found) do
    local message = redis.call('HGET', KEYS[1], pair[1])
    if message then
        redis.call('ZADD', KEYS[5], now - (#found - n + 1) * 0.001, message)
        released[#released + 1] = pair[1]
    end
    remove(pair[1], prefix)
end
if #released > 0 then redis.call('HINCRBY', KEYS[4], 'released', #released) end
return released
