-- number.lua — the gate's first step on a phone number's own hash slot
-- ({n:<digest>}), before gate.lua runs on the debtor's: the rules scoped to
-- the number count every debtor's contacts to it, and an SMS keyword
-- opt-out of the number stops SMS to it whoever it belongs to.
--
-- For each candidate channel it evaluates the number's checks and, when
-- they all pass, reserves the contact: the intent id is added (ZADD NX) to
-- the streams the contact counts in, and the reservation is marked pending
-- (KEYS[1]: id → "<owner>|<hold end ms>") until the caller settles it
-- (settle.lua) once gate.lua has decided: kept on the claimed channel,
-- removed everywhere else. A pending reservation counts like a contact; a
-- check full only because of other intents' live reservations frees at the
-- earliest hold end (they settle within a round trip). A reservation never
-- settled (the caller crashed) stops being pending at its hold end and
-- counts as a contact until it ages out of the window: an over-count,
-- never an under-count. An intent's own member never counts against it
-- (a retry after a crash finds it).
--
-- KEYS[1]   the number's pending reservations (hash)
-- KEYS[2]   the number's opt-outs (hash; field "sms": a keyword opt-out)
-- KEYS[3]   the state marker when ARGV[7] is "1" (one Redis, not a
--           cluster), else the first stream
-- KEYS[..]  the number's event streams (sorted sets: member intent id,
--           score unix ms)
--
-- ARGV[1] intent id   ARGV[2] now (ms)   ARGV[3] owner (the gate's lease
-- token)   ARGV[4] hold end (ms)   ARGV[5] stream retention (ms)
-- ARGV[6] "1": preview (evaluate, write nothing)
-- ARGV[7] "1": refuse if the state marker is gone (Redis lost its data:
--         nothing is reserved before the rebuild; answers {"lost"})
-- ARGV[8] number of candidates; per candidate:
--   channel, number of checks; per check: stream key index (into KEYS),
--   since (ms), limit, sliding (ms, 0 for a calendar window), until (ms),
--   rule id (JSON-encoded), rule kind; number of streams the contact counts
--   in; their key indexes.
--
-- Returns {reserved, candidates...}: reserved is 1 when a pending mark was
-- written; per candidate {free, rule, kind, counts, added}: free is 0 when
-- the checks pass now (and the contact was reserved), -1 when the number
-- opted out of the channel, else the instant (ms) the deciding check frees;
-- rule (JSON) and kind name that check; counts lists the JSON members
-- '"rule":n' of every check; added lists the key indexes the id was added
-- to now.
local pend, opt = KEYS[1], KEYS[2]
local id, now, owner = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ret = tonumber(ARGV[5])
local preview = ARGV[6] == '1'
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  return {'lost'}
end

local live = {}
local p = redis.call('HGETALL', pend)
for j = 1, #p, 2 do
  local u = tonumber(string.match(p[j + 1], '|(%d+)$') or '0')
  if u > now then
    live[p[j]] = u
  elseif not preview then
    redis.call('HDEL', pend, p[j]) -- never settled: from now on a contact
  end
end
local optedSMS = redis.call('HEXISTS', opt, 'sms') == 1

local out, reserved = {0}, false
local i = 9
for _ = 1, tonumber(ARGV[8]) do
  local ch, nchk = ARGV[i], tonumber(ARGV[i + 1])
  local checks = i + 2
  i = checks + nchk * 7
  local nres = tonumber(ARGV[i])
  local res = i + 1
  i = res + nres
  local free, rule, kind, counts, added = 0, '', '', {}, {}
  for c = 0, nchk - 1 do
    local o = checks + c * 7
    local key = KEYS[tonumber(ARGV[o])]
    local since, limit = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
    local sliding, untl = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
    local ev = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES')
    local scores, held, heldMin = {}, 0, nil
    for j = 1, #ev, 2 do
      if ev[j] ~= id then
        scores[#scores + 1] = tonumber(ev[j + 1])
        local u = live[ev[j]]
        if u then
          held = held + 1
          if heldMin == nil or u < heldMin then heldMin = u end
        end
      end
    end
    local n = #scores
    counts[#counts + 1] = ARGV[o + 5] .. ':' .. n
    if n >= limit then
      local f = untl
      if n - held < limit then
        f = heldMin + 1 -- full only with reservations still being decided
      elseif sliding > 0 then
        f = scores[n - limit + 1] + sliding + 1
      end
      if f > free then free, rule, kind = f, ARGV[o + 5], ARGV[o + 6] end
    end
  end
  if ch == 'sms' and optedSMS then
    free, rule, kind = -1, '', ''
  elseif free <= now then
    free = 0
    if not preview and nres > 0 then
      for r = 0, nres - 1 do
        local k = tonumber(ARGV[res + r])
        if redis.call('ZADD', KEYS[k], 'NX', now, id) == 1 then added[#added + 1] = k end
        redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - ret)
        redis.call('PEXPIRE', KEYS[k], ret)
      end
      reserved = true
    end
  end
  out[#out + 1] = {free, rule, kind, counts, added}
end
if reserved then
  redis.call('HSET', pend, id, owner .. '|' .. ARGV[4])
  redis.call('PEXPIRE', pend, ret)
  out[1] = 1
end
return out
