-- finish.lua — record the outcome of a send by the worker that holds the lease.
--
-- KEYS[1]   the intent's record hash (hash-tagged by debtor)
-- KEYS[2..] event streams the contact was counted in, released (the intent
--           removed from them) when ARGV[8] is "1": the send failed for
--           certain before any provider accepted it
-- ARGV[1]  owner: the worker's id
-- ARGV[2]  now, unix milliseconds
-- ARGV[3]  record TTL, seconds
-- ARGV[4]  new state (sent, failed, sent_unconfirmed, suppressed, deferred, ...)
-- ARGV[5]  reason (may be empty)
-- ARGV[6]  channel (may be empty)
-- ARGV[7]  timeline entry, JSON; its seq is the number in its field name e:<seq>
-- ARGV[8]  "1" to release the contact slot, else "0"
-- ARGV[9]  intent id (the member to release)
-- ARGV[10] the provider's id of the message or call (may be empty)
--
-- Returns {outcome, state, seq}:
--   "ok"    recorded; seq is the new entry's
--   "gone"  the record is gone (Redis lost its data); nothing changed
--   "lost"  this worker no longer holds the lease (it expired and another
--           worker took over); nothing changed
local rec = KEYS[1]
local st = redis.call('HGET', rec, 'state')
if not st then
  return {'gone', '', 0}
end
if st ~= 'sending' or redis.call('HGET', rec, 'owner') ~= ARGV[1] then
  return {'lost', st or '', 0}
end
local seq = redis.call('HINCRBY', rec, 'seq', 1)
redis.call('HSET', rec, 'state', ARGV[4], 'reason', ARGV[5], 'updated', ARGV[2], 'e:' .. seq, ARGV[7])
if ARGV[6] ~= '' then redis.call('HSET', rec, 'channel', ARGV[6]) end
if ARGV[10] ~= '' then redis.call('HSET', rec, 'provider_id', ARGV[10]) end
redis.call('HDEL', rec, 'owner', 'lease')
redis.call('EXPIRE', rec, ARGV[3])
if ARGV[8] == '1' then
  for k = 2, #KEYS do
    redis.call('ZREM', KEYS[k], ARGV[9])
  end
end
return {'ok', ARGV[4], seq}
