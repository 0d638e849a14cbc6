-- Takes up to ARGV[1] more messages from a queue the worker's BRPOP just read from, and records
-- each in the unacknowledged set exactly as kombu does when it receives one: the envelope's
-- delivery tag in the index (scored with the worker's clock, ARGV[2]) and `[envelope, exchange,
-- routing key]` in the hash, which kombu reads back to restore the message. The envelope is
-- stored as it came, so the worker neither serialises it again nor sends it back over the wire.
-- KEYS[1]  the queue (the list BRPOP named, priority suffix included)
-- KEYS[2]  kombu's unacked index (sorted set)   KEYS[3]  kombu's unacked hash
-- ARGV[1]  how many messages at most           ARGV[2]  the worker's clock, seconds
-- Returns item1, tag1, item2, tag2, ...: the tag the item was recorded under, or '' when it is not
-- an envelope whose tag and routing this script can read (the worker then checks it as any other
-- item: it dead-letters what is unreadable, and lets kombu record what kombu can read).
local taken = {}
for _ = 1, tonumber(ARGV[1]) do
    local item = redis.call('RPOP', KEYS[1])
    if not item then
        break
    end
    local recorded = ''
    local ok, envelope = pcall(cjson.decode, item)
    if ok and type(envelope) == 'table' and type(envelope.properties) == 'table' then
        local tag = envelope.properties.delivery_tag
        local info = envelope.properties.delivery_info
        if type(tag) == 'string' and tag ~= '' and type(info) == 'table'
                and type(info.exchange) == 'string' and type(info.routing_key) == 'string' then
            redis.call('ZADD', KEYS[2], ARGV[2], tag)
            redis.call('HSET', KEYS[3], tag,
                '[' .. item .. ',' .. cjson.encode(info.exchange) .. ',' .. cjson.encode(info.routing_key) .. ']')
            recorded = tag
        end
    end
    taken[#taken + 1] = item
    taken[#taken + 1] = recorded
end
return taken
