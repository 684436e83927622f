-- claim.lua — decide, atomically, whether this worker may act on an intent.
-- Idempotency lives here: an intent id that reached an end state is never
-- acted on again, and only one worker at a time may hold it in "sending".
--
-- KEYS[1]  the intent's record hash (hash-tagged by debtor)
-- ARGV[1]  intent id
-- ARGV[2]  debtor id
-- ARGV[3]  now, unix milliseconds
-- ARGV[4]  lease end, unix milliseconds (used when the target is "sending")
-- ARGV[5]  owner: the worker's id
-- ARGV[6]  record TTL, seconds
-- ARGV[7]  target state: "sending" to reserve, or an end state decided
--          without sending ("suppressed", "rejected", "canceled": a
--          canceled id, known or not yet, is never sent: the gate takes it
--          for decided)
-- ARGV[8]  reason (may be empty)
-- ARGV[9]  channel (may be empty)
-- ARGV[10] template (may be empty)
-- ARGV[11] timeline entry, JSON; its seq is the number in its field name e:<seq>
--
-- Returns {outcome, state, seq, owner, lease}:
--   "claimed"   the record moved to the target (from none, accepted, deferred,
--               or rejected when the target is sending); seq is the new entry's
--   "duplicate" the record is in an end state already; nothing changed
--   "busy"      another worker holds a live lease; nothing changed
--   "stale"     a "sending" lease expired (its worker died mid-send); the
--               caller now holds the lease and must resolve the unknown
--               outcome; no entry written
local rec = KEYS[1]
local now = tonumber(ARGV[3])
local st = redis.call('HGET', rec, 'state')

if st == 'sending' then
  local owner = redis.call('HGET', rec, 'owner') or ''
  local lease = tonumber(redis.call('HGET', rec, 'lease') or '0')
  if owner ~= ARGV[5] and lease > now then
    return {'busy', st, 0, owner, lease}
  end
  if ARGV[7] ~= 'sending' then
    -- an end state may not be decided over a send whose outcome is unknown
    return {'busy', st, 0, owner, lease}
  end
  redis.call('HSET', rec, 'owner', ARGV[5], 'lease', ARGV[4], 'updated', now)
  redis.call('EXPIRE', rec, ARGV[6])
  return {'stale', st, tonumber(redis.call('HGET', rec, 'seq') or '0'), owner, lease}
end

-- A rejected intent contacted no one: a corrected copy with the same id may
-- still be sent.
local reopen = st == 'rejected' and ARGV[7] == 'sending'
if st and st ~= 'accepted' and st ~= 'deferred' and not reopen then
  return {'duplicate', st, tonumber(redis.call('HGET', rec, 'seq') or '0'), '', 0}
end

if not st then
  redis.call('HSET', rec, 'id', ARGV[1], 'debtor', ARGV[2], 'created', now)
end
local seq = redis.call('HINCRBY', rec, 'seq', 1)
redis.call('HSET', rec, 'state', ARGV[7], 'reason', ARGV[8], 'updated', now, 'e:' .. seq, ARGV[11])
if ARGV[9] ~= '' then redis.call('HSET', rec, 'channel', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', rec, 'template', ARGV[10]) end
if ARGV[7] == 'sending' then
  redis.call('HSET', rec, 'owner', ARGV[5], 'lease', ARGV[4])
else
  redis.call('HDEL', rec, 'owner', 'lease')
end
redis.call('EXPIRE', rec, ARGV[6])
return {'claimed', ARGV[7], seq, ARGV[5], tonumber(ARGV[4])}
