-- resolve.lua — settle a send whose outcome was unknown (sent_unconfirmed)
-- once the provider's records or an ops decision tell what happened.
--
-- KEYS[1]  the intent's record hash
-- ARGV[1]  now, unix milliseconds
-- ARGV[2]  record TTL, seconds
-- ARGV[3]  new state: sent, delivered, failed or undelivered
-- ARGV[4]  timeline entry, JSON
--
-- Returns {outcome, state, seq}: "ok" (recorded), or "conflict" when the
-- record is not sent_unconfirmed (nothing changed).
local rec = KEYS[1]
local st = redis.call('HGET', rec, 'state')
if st ~= 'sent_unconfirmed' then
  return {'conflict', st or '', 0}
end
local seq = redis.call('HINCRBY', rec, 'seq', 1)
redis.call('HSET', rec, 'state', ARGV[3], 'reason', 'resolved', 'updated', ARGV[1], 'e:' .. seq, ARGV[4])
redis.call('EXPIRE', rec, ARGV[2])
return {'ok', ARGV[3], seq}
