-- bind.lua — bind an intent id to its debtor, once: the id → debtor index
-- is written only if absent (or refreshed if it already names this debtor).
-- An id bound to another debtor is a conflict: the caller must not decide
-- it, nor record anything under the other debtor.
--
-- KEYS[1]  the id's index key (its own slot: ids and debtors cross slots)
-- ARGV[1]  debtor id
-- ARGV[2]  TTL, milliseconds (the records' lifetime)
--
-- Returns the debtor the id is bound to: ARGV[1], or the other one.
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
