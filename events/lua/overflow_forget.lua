-- Takes a workspace out of the overflow index, only if nothing was spilled or claimed meanwhile.
-- KEYS[1]  the index of workspaces with an overflow (a set)
-- KEYS[2]  the workspace's overflow (a list)
-- KEYS[3]  the workspace's open claims (a sorted set)
-- ARGV[1]  the workspace id
-- Returns 0.
if redis.call('LLEN', KEYS[2]) == 0 and redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
end
return 0
