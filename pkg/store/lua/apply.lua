-- apply.lua — fold one published status transition back into its record,
-- when Redis lost its data and the records are rebuilt from reminders.status.
-- Idempotent: an entry already present is left as it is, and the record's
-- state is that of its highest seq, whatever order events are applied in.
-- A record rebuilt in "sending" has no lease holder: the next claim treats
-- it as a send whose outcome is unknown.
--
-- KEYS[1]  the intent's record hash (hash-tagged by debtor)
-- ARGV[1]  intent id
-- ARGV[2]  debtor id
-- ARGV[3]  the transition's seq
-- ARGV[4]  its time, unix milliseconds
-- ARGV[5]  its state
-- ARGV[6]  reason (may be empty)
-- ARGV[7]  channel (may be empty)
-- ARGV[8]  timeline entry, JSON
-- ARGV[9]  record TTL, seconds
--
-- Returns 1 if the entry was new, 0 if the record had it already.
local rec = KEYS[1]
local seq = tonumber(ARGV[3])
if redis.call('HSETNX', rec, 'e:' .. seq, ARGV[8]) == 0 then
  return 0
end
redis.call('HSETNX', rec, 'id', ARGV[1])
redis.call('HSETNX', rec, 'debtor', ARGV[2])
local created = tonumber(redis.call('HGET', rec, 'created') or '0')
if created == 0 or tonumber(ARGV[4]) < created then
  redis.call('HSET', rec, 'created', ARGV[4])
end
local cur = tonumber(redis.call('HGET', rec, 'seq') or '0')
if seq > cur then
  redis.call('HSET', rec, 'seq', seq, 'state', ARGV[5], 'reason', ARGV[6], 'updated', ARGV[4])
  if ARGV[7] ~= '' then redis.call('HSET', rec, 'channel', ARGV[7]) end
end
redis.call('EXPIRE', rec, ARGV[9])
return 1
