-- Writes a batch's changes to an address index in one call: the entries of addresses that have
-- candidates (and each contact's own list of addresses), the deletion of entries left with none,
-- and "nobody" for addresses a lookup found nobody for, where no entry is there yet.
-- KEYS[1..s]          entries to set, each for ARGV[3] seconds
-- KEYS[s+1..s+d]      entries to delete
-- KEYS[s+d+1..]       addresses found by nobody: set to '[]' for ARGV[4] seconds unless they exist
-- ARGV[1] s   ARGV[2] d   ARGV[3] seconds an entry lives   ARGV[4] seconds a "nobody" lives
-- ARGV[5..s+4]        the values of the entries to set, in the order of their KEYS
local sets, deletes = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, sets do
    redis.call('SET', KEYS[i], ARGV[i + 4], 'EX', ARGV[3])
end
for i = sets + 1, sets + deletes do
    redis.call('DEL', KEYS[i])
end
for i = sets + deletes + 1, #KEYS do
    redis.call('SET', KEYS[i], '[]', 'EX', ARGV[4], 'NX')
end
return #KEYS
