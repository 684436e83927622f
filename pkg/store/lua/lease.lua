-- lease.lua — take or keep a named lease (leader election: one scheduler
-- re-injects deferred intents at a time).
--
-- KEYS[1]  the lease key
-- ARGV[1]  owner id
-- ARGV[2]  lease duration, milliseconds
--
-- Returns 1 if owner holds the lease (taken now or renewed), else 0.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
