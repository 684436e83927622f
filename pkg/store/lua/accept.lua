-- accept.lua — create an intent's record in state "accepted" when it was taken
-- in over HTTP, unless the intent is known already.
--
-- KEYS[1]  the intent's record hash (hash-tagged by debtor)
-- ARGV[1]  intent id
-- ARGV[2]  debtor id
-- ARGV[3]  now, unix milliseconds
-- ARGV[4]  record TTL, seconds
-- ARGV[5]  template
-- ARGV[6]  timeline entry, JSON; its seq is the number in its field name e:<seq>
--
-- Returns {outcome, state, seq}: "accepted" (created, seq 1) or "exists"
-- (nothing changed; state is the record's).
local rec = KEYS[1]
local st = redis.call('HGET', rec, 'state')
if st then
  return {'exists', st, tonumber(redis.call('HGET', rec, 'seq') or '0')}
end
redis.call('HSET', rec, 'id', ARGV[1], 'debtor', ARGV[2], 'created', ARGV[3], 'updated', ARGV[3],
  'state', 'accepted', 'template', ARGV[5], 'seq', 1, 'e:1', ARGV[6])
redis.call('EXPIRE', rec, ARGV[4])
return {'accepted', 'accepted', 1}
