-- optout.lua — set or remove one field of a debtor's opt-out hash, keeping
-- the "dnc" field (what the gate reads for legal do-not-contact states) in
-- step with the "dnc:<state>" fields.
--
-- It keeps the "holds" field (a JSON list the gate reads) in step with the
-- "hold:<id>" fields the same way: each hold's id, debt ("" for the whole
-- debtor), until (unix ms; 0: cancel rather than pause) and reason.
--
-- KEYS[1]  the debtor's opt-out hash
-- ARGV[1]  field: a channel, "all", "dnc:<state>" or "hold:<id>"
-- ARGV[2]  "set" or "remove"
-- ARGV[3]  value (JSON of the opt-out) when setting
--
-- Returns 1 if the hash changed, else 0.
local h, f = KEYS[1], ARGV[1]
local changed
if ARGV[2] == 'set' then
  changed = redis.call('HSET', h, f, ARGV[3])
  changed = 1
else
  changed = redis.call('HDEL', h, f)
end
if string.sub(f, 1, 4) == 'dnc:' then
  local states = {}
  for _, k in ipairs(redis.call('HKEYS', h)) do
    if string.sub(k, 1, 4) == 'dnc:' then table.insert(states, string.sub(k, 5)) end
  end
  if #states > 0 then
    table.sort(states)
    redis.call('HSET', h, 'dnc', table.concat(states, ','))
  else
    redis.call('HDEL', h, 'dnc')
  end
end
if string.sub(f, 1, 5) == 'hold:' then
  local holds = {}
  local all = redis.call('HGETALL', h)
  for j = 1, #all, 2 do
    if string.sub(all[j], 1, 5) == 'hold:' then
      local v = cjson.decode(all[j + 1])
      table.insert(holds, {id = string.sub(all[j], 6), debt = v.debt_id or '', ['until'] = v.until_ms or 0, reason = v.reason or ''})
    end
  end
  if #holds > 0 then
    table.sort(holds, function(a, b) return a.id < b.id end)
    redis.call('HSET', h, 'holds', cjson.encode(holds))
  else
    redis.call('HDEL', h, 'holds')
  end
end
return changed
