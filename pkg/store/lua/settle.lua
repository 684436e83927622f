-- settle.lua — settle a reservation number.lua made, once gate.lua decided:
-- the caller lists the streams to take the intent out of (every stream it
-- was added to, except those of the channel claimed). Only the reservation's
-- holder settles it: if another attempt of the same intent reserved since
-- (a worker that took it over), the reservation is that one's and nothing
-- changes.
--
-- KEYS[1]   the number's pending reservations (hash)
-- KEYS[2..] streams to remove the intent from
-- ARGV[1]   intent id   ARGV[2] owner (the lease token that reserved)
--
-- Returns 1 when settled, 0 when the reservation was not this owner's.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or string.sub(v, 1, #ARGV[2] + 1) ~= ARGV[2] .. '|' then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
for k = 2, #KEYS do
  redis.call('ZREM', KEYS[k], ARGV[1])
end
return 1
