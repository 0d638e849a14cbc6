-- Claims the oldest entries of a workspace's overflow for one drain: they move out of the list
-- into a claim that expires, so a drain that dies leaves them to the next one. Claims whose lease
-- is over are first put back at the head of the list, in their order. Each entry is JSON that
-- says how many events it carries (`events`).
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
local listed = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local taken, events = {}, 0
for i = 1, #listed do
  -- the events an entry carries, as it says (an entry written before it said so counts as one)
  local ok, entry = pcall(cjson.decode, listed[i])
  local n = ok and type(entry) == 'table' and tonumber(entry.events) or 1
  if n < 1 then n = 1 end
  if (#taken > 0 or ARGV[6] ~= '1') and events + n > tonumber(ARGV[3]) then break end
  taken[#taken + 1] = listed[i]
  events = events + n
end
if #taken == 0 then return taken end
redis.call('LTRIM', KEYS[1], #taken, -1)
redis.call('SET', ARGV[5] .. ARGV[4], cjson.encode(taken), 'EX', math.ceil(tonumber(ARGV[2])) + 60)
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
return taken
