-- Expires the emails that have waited too long for their contact.
-- KEYS[1]  the workspace's waiting emails (a hash: event id -> the message to release)
-- KEYS[2]  their meta (a hash: event id -> JSON with `addresses` and `sent`)
-- KEYS[3]  since when each waits (a sorted set: event id -> seconds since the epoch)
-- KEYS[4]  the workspace's counts (a hash: waited, released, expired, dropped)
-- ARGV[1]  the prefix of the address sets
-- ARGV[2]  expire what waits since before this (seconds since the epoch)
-- Returns how many expired.
return expire(ARGV[2], ARGV[1])
