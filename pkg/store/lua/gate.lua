-- gate.lua — the compliance gate: ONE call per intent decides, atomically,
-- whether it may be contacted now and on which channel, and records the
-- decision on the intent's record. In order:
--   1. idempotency: an intent in an end state is a duplicate; one in
--      "sending" is busy (live lease) or stale (lease expired: taken over);
--   2. legal do-not-contact and opt-out of every channel → suppressed;
--   3. for each candidate channel in order (one, or the intent's channels
--      when it allows fallback): skip it if opted out; else it is free now
--      when its window allows now and every frequency check is under its
--      limit; the first free one is reserved (the contact is counted in its
--      streams) and the record moves to "sending";
--   4. none free: if every candidate is opted out → suppressed/opted_out;
--      else deferred until the earliest instant one frees, or
--      suppressed/expired if that is after the intent expires.
-- All keys are the debtor's (same {hash tag}), so this runs on Redis Cluster:
-- the rules scoped to a phone number, and a keyword opt-out of the number,
-- were evaluated before on the number's own slot (number.lua), which hands
-- its verdict in as part of each candidate's window verdict and its counts
-- in ARGV[15].
--
-- KEYS[1]   the intent's record hash
-- KEYS[2]   the debtor's opt-out hash (fields: a channel, "all", "dnc")
-- KEYS[3]   the state marker (checked when ARGV[12] is "1": one Redis, not a
--           cluster, where it would be in another slot)
-- KEYS[4..] event streams (sorted sets: member intent id, score unix ms)
--
-- ARGV[1]  intent id            ARGV[2]  debtor id
-- ARGV[3]  now, unix ms         ARGV[4]  lease end, unix ms
-- ARGV[5]  owner (worker id)    ARGV[6]  record TTL, seconds
-- ARGV[7]  template             ARGV[8]  stream retention, ms (longest lookback)
-- ARGV[9]  expires_at, unix ms (0: never)
-- ARGV[10] the start of the timeline entry: a JSON object without its two
--          closing braces, ending inside its "inputs" object (this script
--          adds "counts" there, then the decision's fields). Strings this
--          script adds come JSON-encoded from the caller, quotes included
--          (written "json" below), so no JSON is parsed here.
-- ARGV[11] number of candidates
-- ARGV[12] "1": refuse to decide if the state marker is gone (Redis lost
--          its data: opt-outs and records must be rebuilt first)
-- ARGV[13] "1": preview: decide as above but write nothing (no record, no
--          lease, no stream entry): what the gate would decide now
-- ARGV[14] the intent's debt id ("" if none): holds on a debt apply to it
-- ARGV[15] the counts of the number's checks (JSON members '"rule":n',
--          comma-separated; may be empty)
-- ARGV[16..] per candidate:
--   channel, masked address (json), window: "1" allowed or "0"; window next
--   (ms), window rule id (json), window rule kind, "1" when the number
--   opted out of this channel (an SMS keyword reply from it) else "0",
--   number of checks; per check: stream key index (into KEYS), since (ms),
--     limit, sliding (ms, 0 for a calendar window), until (ms, calendar end),
--     rule id (json), rule kind;
--   number of streams to count the contact in; their key indexes.
-- (Rules are named by id; the caller adds each rule's legal source to the
-- entry it publishes, from the profile.)
--
-- Returns {outcome, state, seq, a, b, channel, entry}:
--   "claimed"    state sending; a = "", b = lease end; entry = the new entry
--   "deferred"   a = deciding rule id, b = until (ms); entry = the new entry
--   "suppressed" a = reason (opted_out, do_not_contact, expired); entry
--   "duplicate"  state = the record's; nothing changed
--   "busy"       a = lease holder, b = lease end; nothing changed
--   "stale"      a = the dead holder; the caller now holds the lease on the
--                record's channel (returned); nothing else changed
--   "lost"       the state marker is gone; nothing changed
local rec, optouts = KEYS[1], KEYS[2]
local id, now, owner = ARGV[1], tonumber(ARGV[3]), ARGV[5]
local preview = ARGV[13] == '1'
if ARGV[12] == '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  return {'lost', '', 0, '', 0, '', ''}
end

local st = redis.call('HGET', rec, 'state')
if st == 'sending' then
  local holder = redis.call('HGET', rec, 'owner') or ''
  local lease = tonumber(redis.call('HGET', rec, 'lease') or '0')
  if preview or (holder ~= owner and lease > now) then
    return {'busy', st, 0, holder, lease, '', ''}
  end
  redis.call('HSET', rec, 'owner', owner, 'lease', ARGV[4], 'updated', now)
  redis.call('EXPIRE', rec, ARGV[6])
  return {'stale', st, tonumber(redis.call('HGET', rec, 'seq') or '0'), holder, lease,
    redis.call('HGET', rec, 'channel') or '', ''}
end
if st and st ~= 'accepted' and st ~= 'deferred' and st ~= 'rejected' then
  return {'duplicate', st, tonumber(redis.call('HGET', rec, 'seq') or '0'), '', 0, '', ''}
end

local counts, counted = {}, {}
if ARGV[15] ~= '' then counts[1] = ARGV[15] end

-- write moves the record to state with a new timeline entry made of the
-- base, the counts and fields (a list of JSON members), and returns the
-- entry's seq and JSON.
local function write(state, reason, channel, fields)
  local entry = ARGV[10] .. ',"counts":{' .. table.concat(counts, ',') .. '}},"state":"' .. state .. '"'
  if reason ~= '' then entry = entry .. ',"reason":"' .. reason .. '"' end
  if channel ~= '' then entry = entry .. ',"channel":"' .. channel .. '"' end
  if #fields > 0 then entry = entry .. ',' .. table.concat(fields, ',') end
  entry = entry .. '}'
  if preview then return 0, entry end
  local seq = redis.call('HINCRBY', rec, 'seq', 1)
  local hf = {'state', state, 'reason', reason, 'updated', now, 'template', ARGV[7], 'e:' .. seq, entry}
  if not st then
    table.insert(hf, 'id'); table.insert(hf, id)
    table.insert(hf, 'debtor'); table.insert(hf, ARGV[2])
    table.insert(hf, 'created'); table.insert(hf, now)
  end
  if channel ~= '' then table.insert(hf, 'channel'); table.insert(hf, channel) end
  if ARGV[14] ~= '' then table.insert(hf, 'debt'); table.insert(hf, ARGV[14]) end
  if state == 'sending' then
    table.insert(hf, 'owner'); table.insert(hf, owner)
    table.insert(hf, 'lease'); table.insert(hf, ARGV[4])
  else
    redis.call('HDEL', rec, 'owner', 'lease')
  end
  redis.call('HSET', rec, unpack(hf))
  redis.call('EXPIRE', rec, ARGV[6])
  return seq, entry
end

local dnc = redis.call('HGET', optouts, 'dnc')
if dnc then
  local seq, entry = write('suppressed', 'do_not_contact', '',
    {'"rule":"do-not-contact"', '"detail":' .. cjson.encode(dnc)})
  return {'suppressed', 'suppressed', seq, 'do_not_contact', 0, '', entry}
end
local all = redis.call('HGET', optouts, 'all')

-- Holds (the "holds" field of the opt-out hash, kept by optout.lua): one
-- without until cancels the intent; one with until pauses it to then.
local debt, pauseUntil = ARGV[14], 0
local hs = redis.call('HGET', optouts, 'holds')
if hs then
  for _, h in ipairs(cjson.decode(hs)) do
    if h.debt == '' or h.debt == debt then
      if h['until'] == 0 then
        local seq, entry = write('canceled', h.reason, '', {'"rule":"hold"', '"detail":' .. cjson.encode('hold ' .. h.id)})
        return {'canceled', 'canceled', seq, h.reason, 0, '', entry}
      elseif h['until'] > now and h['until'] > pauseUntil then
        pauseUntil = h['until']
      end
    end
  end
end

local i = 16
local ncand = tonumber(ARGV[11])
local best, bestRule, bestKind, bestChannel = nil, '', '', ''
local optedOut, firstOpted, byNumber = 0, '', false
for _ = 1, ncand do
  local ch, to, wok, wnext = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local wrule, wkind, numOpted = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6] == '1'
  local nchk = tonumber(ARGV[i + 7])
  i = i + 8
  local checks = i
  i = i + nchk * 7
  local nres = tonumber(ARGV[i])
  local res = i + 1
  i = i + 1 + nres

  local debtorOpted = all or redis.call('HEXISTS', optouts, ch) == 1
  if debtorOpted or numOpted then
    optedOut = optedOut + 1
    if firstOpted == '' then firstOpted, byNumber = ch, not debtorOpted end
  else
    local free, rule, kind = 0, '', ''
    if wok ~= '1' then
      free, rule, kind = wnext, wrule, wkind
    end
    if pauseUntil > free then
      free, rule, kind = pauseUntil, '"hold"', 'hold'
    end
    for c = 0, nchk - 1 do
      local o = checks + c * 7
      local key = KEYS[tonumber(ARGV[o])]
      local since, limit = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
      local sliding, untl = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
      local n = redis.call('ZCOUNT', key, since, '+inf')
      if not counted[ARGV[o + 5]] then
        counted[ARGV[o + 5]] = true
        counts[#counts + 1] = ARGV[o + 5] .. ':' .. n
      end
      if n >= limit then
        local f = untl
        if sliding > 0 then
          -- the window frees just after the oldest event that keeps it full
          -- ages out (an event exactly at "since" still counts)
          local e = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT', n - limit, 1)
          f = tonumber(e[2]) + sliding + 1
        end
        if f > free then
          free, rule, kind = f, ARGV[o + 5], ARGV[o + 6]
        end
      end
    end
    if free <= now then
      for r = 0, nres - 1 do
        if preview then break end
        local key = KEYS[tonumber(ARGV[res + r])]
        redis.call('ZADD', key, now, id)
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[8]))
        redis.call('PEXPIRE', key, ARGV[8])
      end
      local seq, entry = write('sending', '', ch, {'"to":' .. to, '"rule":"allowed"'})
      return {'claimed', 'sending', seq, '', tonumber(ARGV[4]), ch, entry}
    end
    if best == nil or free < best then
      best, bestRule, bestKind, bestChannel = free, rule, kind, ch
    end
  end
end

if best == nil then
  local ch = firstOpted
  if all then ch = 'all' end
  local detail = '"detail":"opted out of ' .. ch .. '"'
  if byNumber and not all then
    detail = '"detail":"the number opted out of ' .. ch .. ' (keyword reply), for every debtor at it"'
  end
  local seq, entry = write('suppressed', 'opted_out', '', {'"rule":"opt-out"', detail})
  return {'suppressed', 'suppressed', seq, 'opted_out', 0, '', entry}
end

local fields = {'"rule":' .. bestRule, '"until_ms":' .. string.format('%d', best)}
local expires = tonumber(ARGV[9])
if expires > 0 and best >= expires then
  fields[#fields + 1] = '"detail":"the next allowed time is after expires_at"'
  local seq, entry = write('suppressed', 'expired', bestChannel, fields)
  return {'suppressed', 'suppressed', seq, 'expired', best, bestChannel, entry}
end
local reason = 'frequency_cap'
if bestKind == 'window' then reason = 'outside_hours'
elseif bestKind == 'holiday' then reason = 'holiday'
elseif bestKind == 'gap' then reason = 'min_gap'
elseif bestKind == 'breaker' then reason = 'provider_down'
elseif bestKind == 'provider_busy' then reason = 'provider_busy'
elseif bestKind == 'not_before' then reason = 'not_before'
elseif bestKind == 'hold' then reason = 'hold' end
local seq, entry = write('deferred', reason, bestChannel, fields)
return {'deferred', 'deferred', seq, bestRule, best, bestChannel, entry}
