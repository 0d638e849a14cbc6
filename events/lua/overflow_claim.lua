-- Claims the oldest entries of a workspace's overflow for one drain: they move out of the list
-- into a claim that expires, so a drain that dies leaves them to the next one. Claims whose lease
-- is over are first put back at the head of the list, in their order. An entry is JSON: a message
-- the consumer spilled says how many events it carries (`events`); a queue item the sieve moved
-- as it was (a message envelope, with `properties`) says so in its `sfsync_events` header;
-- anything else counts as one.
-- KEYS[1]  the workspace's overflow (a list, oldest first)
-- KEYS[2]  the workspace's open claims (a sorted set: token -> when its lease ends)
-- ARGV[1]  now, seconds since the epoch
-- ARGV[2]  the lease, in seconds
-- ARGV[3]  the most events the claimed entries may carry
-- ARGV[4]  the new claim's token
-- ARGV[5]  the prefix of claim keys (a claim's entries are kept at prefix .. token)
-- ARGV[6]  '1' to take at least one entry whatever it carries, '0' not to
-- Returns the claimed entries, oldest first.
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, old in ipairs(expired) do
  local held = redis.call('GET', ARGV[5] .. old)
  if held then
    local items = cjson.decode(held)
    for i = #items, 1, -1 do redis.call('LPUSH', KEYS[1], items[i]) end
    redis.call('DEL', ARGV[5] .. old)
  end
  redis.call('ZREM', KEYS[2], old)
end

local function events_of(text)
  local ok, entry = pcall(cjson.decode, text)
  if not ok or type(entry) ~= 'table' then return 1 end
  local n = entry.events
  if entry.properties ~= nil and type(entry.headers) == 'table' then n = entry.headers.sfsync_events end
  if type(n) ~= 'number' or n < 1 or n ~= math.floor(n) then return 1 end
  return n
end

local listed = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local taken, events = {}, 0
for i = 1, #listed do
  local n = events_of(listed[i])
  if (#taken > 0 or ARGV[6] ~= '1') and events + n > tonumber(ARGV[3]) then break end
  taken[#taken + 1] = listed[i]
  events = events + n
end
if #taken == 0 then return taken end
redis.call('LTRIM', KEYS[1], #taken, -1)
redis.call('SET', ARGV[5] .. ARGV[4], cjson.encode(taken), 'EX', math.ceil(tonumber(ARGV[2])) + 60)
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
return taken
