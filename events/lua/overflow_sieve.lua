-- Moves chosen workspaces' messages still on an event queue into their overflows, as they are
-- (the others keep their places), in one atomic step: a message is on the queue or in an
-- overflow, never in neither. A message belongs to the workspace its `sfsync_workspace` header
-- names (the envelope is decoded; nothing is guessed from the body or other headers). A message
-- without that header, one that is not a JSON envelope (with `headers` and `properties` objects),
-- or one naming a workspace not chosen stays where it is, for the read loop. A moved item is pushed unchanged: whoever claims it reads
-- its envelope again (and how many events it carries from its `sfsync_events` header).
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

local function headers_of(item)
  local ok, envelope = pcall(cjson.decode, item)
  if not ok or type(envelope) ~= 'table' or type(envelope.headers) ~= 'table'
      or type(envelope.properties) ~= 'table' then return nil end
  return envelope.headers
end

for i = 1, #items do
  local item, s = items[i], nil
  local headers = headers_of(item)
  if headers and type(headers.sfsync_workspace) == 'string' then s = slot[headers.sfsync_workspace] end
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
      -- the list was read oldest last (the taken end is the right): the oldest goes in first
      for i = #list, 1, -1 do redis.call('RPUSH', KEYS[1 + 2 * s], list[i]) end
      redis.call('SADD', KEYS[2], ARGV[s + 1])
      redis.call('INCRBY', KEYS[2 + 2 * s], #list)
    end
  end
end
local out = {redis.call('LLEN', KEYS[1])}
for s = 1, #ARGV - 1 do out[#out + 1] = counts[s] end
return out
