-- callback.lua — move an intent forward on a provider's delivery callback.
-- Only forward: sending < sent_unconfirmed < sent < delivered, undelivered,
-- failed. A late "sent" never overwrites "delivered"; a repeated callback
-- changes nothing.
--
-- KEYS[1]  the intent's record hash
-- ARGV[1]  new state
-- ARGV[2]  now, unix milliseconds
-- ARGV[3]  record TTL, seconds
-- ARGV[4]  timeline entry, JSON
-- ARGV[5]  the provider's id for the message or call (must match the
--          record's when it has one)
--
-- Returns {outcome, state, seq}: "ok", "ignored" (not forward, or an end
-- state already) or "unknown" (no such record, or another provider id).
local rec = KEYS[1]
local rank = {sending = 1, sent_unconfirmed = 2, sent = 3, delivered = 4, undelivered = 4, failed = 4}
local st = redis.call('HGET', rec, 'state')
if not st then return {'unknown', '', 0} end
local pid = redis.call('HGET', rec, 'provider_id')
if pid and pid ~= '' and ARGV[5] ~= '' and pid ~= ARGV[5] then
  return {'unknown', st, 0}
end
local cur, new = rank[st], rank[ARGV[1]]
if not cur or not new or new <= cur or cur == 4 then
  return {'ignored', st, tonumber(redis.call('HGET', rec, 'seq') or '0')}
end
local seq = redis.call('HINCRBY', rec, 'seq', 1)
redis.call('HSET', rec, 'state', ARGV[1], 'reason', 'callback', 'updated', ARGV[2], 'e:' .. seq, ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', rec, 'provider_id', ARGV[5]) end
redis.call('HDEL', rec, 'owner', 'lease')
redis.call('EXPIRE', rec, ARGV[3])
return {'ok', ARGV[1], seq}
