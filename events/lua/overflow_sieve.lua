-- Moves chosen workspaces' messages still on an event queue into their overflows, as they are
-- (the others keep their places), in one atomic step: a message is on the queue or in an
-- overflow, never in neither.
-- KEYS[1]        the event queue (a list: pushed on the left, taken from the right)
-- KEYS[2]        the index of workspaces with an overflow (a set)
-- KEYS[2s+1]     per chosen workspace s (1, 2, ...): its overflow (a list)
-- KEYS[2s+2]     per chosen workspace s: its count of items moved (a string counter)
-- ARGV[1]        how many items to look at, from the taken end
-- ARGV[s+1]      the chosen workspaces' ids, in the order of their keys
-- Returns the queue's length after the move, then the count moved per chosen workspace.
local slot = {}
for i = 2, #ARGV do slot[ARGV[i]] = i - 1 end
local items = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
local keep, moved, counts, any = {}, {}, {}, false
for i = 1, #ARGV - 1 do moved[i] = {}; counts[i] = 0 end
for i = 1, #items do
    local item, s = items[i], nil
    -- only ASCII items move (kombu and sfsync write ASCII JSON): other bytes may not decode,
    -- and are left to the read loop, which dead-letters what it cannot read
    if not string.find(item, '[\128-\255]') then
        -- the first event's workspace: its first `workspace_id` in Celery's argsrepr header
        -- ('workspace_id': 'ws'), or in an event sent as JSON text (\"workspace_id\": \"ws\")
        local at = string.find(item, 'workspace_id', 1, true)
        if at then
            local ws = string.match(item, "^workspace_id'%s*:%s*'([^'\\]+)'", at)
                or string.match(item, '^workspace_id\\"%s*:%s*\\"([^"\\]+)\\"', at)
            if ws then s = slot[ws] end
        end
    end
    if s then
        local list = moved[s]
        list[#list + 1] = item
        counts[s] = counts[s] + 1
        any = true
    else
        keep[#keep + 1] = item
    end
end
if any then
    redis.call('LTRIM', KEYS[1], 0, -#items - 1)
    for i = 1, #keep do redis.call('RPUSH', KEYS[1], keep[i]) end
    for s = 1, #ARGV - 1 do
        local list = moved[s]
        if #list > 0 then
            for i = #list, 1, -1 do redis.call('RPUSH', KEYS[1 + 2 * s], cjson.encode({raw = list[i]})) end
            redis.call('SADD', KEYS[2], ARGV[s + 1])
            redis.call('INCRBY', KEYS[2 + 2 * s], #list)
        end
    end
end
local out = {redis.call('LLEN', KEYS[1])}
for s = 1, #ARGV - 1 do out[#out + 1] = counts[s] end
return out
