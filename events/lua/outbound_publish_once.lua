-- Records CRM changes as handled and pushes each new one's outbound event, once: a change seen
-- again (the same key) is neither pushed twice nor marked without its event going out.
-- KEYS[1]  the workspace's set of handled changes (a sorted set: change key -> SystemModstamp ms)
-- KEYS[2]  the outbound queue (a list; events are pushed on the left)
-- ARGV     triples, one per change: change key, SystemModstamp in ms, event JSON ('' for none)
-- Returns, per change in order, 1 when it was new, 0 when it had been handled already.
local out = {}
for i = 1, #ARGV, 3 do
  local added = redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 1], ARGV[i])
  if added == 1 and ARGV[i + 2] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[i + 2]) end
  out[#out + 1] = added
end
return out
