-- One bid, decided by the server's clock. ARGV: bidder, name ('' keeps the bidder anonymous),
-- amount, max (0: no proxy), idempotency key.
-- Accepted only while open and before the deadline; the first bid at least the start price,
-- later ones at least the price plus the step of its band. Proxy bidding (eBay's rule): each
-- bidder has a hidden maximum (their max, or the amount); the leader keeps the lead against any
-- lower maximum and the price becomes min(leader's max, the other's max + one step), never
-- below an explicit amount. A maximum that reaches the hidden reserve lifts the price to it.
-- A bid in the snipe window moves the end to now + window, up to max_ext times; the leader
-- raising their own maximum never does (even when it lifts the price to the reserve: nobody
-- was answered, and a leader must not be able to keep an auction going alone).
-- Every bid it logs (the bidder's, and the proxy bids it makes for others) takes the next seq.
-- The answer of an accepted bid is kept by (bidder, key): a replay gets it again, unchanged
-- but for `replay`. A refused bid changes nothing, so it is not kept. A book that is not `ok`
-- answers its status ('stale' or 'fenced') and changes nothing. Every accepted call (a raised
-- maximum too) takes the next rev.
local bidder, name, key = ARGV[1], ARGV[2], ARGV[5]
local amount = count_arg(ARGV[3], 1, MAX_CENTS)
local max = ARGV[4] == '0' and 0 or count_arg(ARGV[4], 1, MAX_CENTS)
if not (text_arg(bidder, 1) and text_arg(name, 0) and text_arg(key, 1) and amount and max)
    or (max > 0 and max < amount) then
  return cjson.encode({code = 'invalid'})
end
local s = load_state()
if not s then
  return cjson.encode({code = 'not_open'})
end
local now = now_ms()
local status = book_status(s, now)
if status ~= 'ok' then
  return cjson.encode({code = status})
end
local field = int(#bidder) .. ':' .. bidder .. key
local seen = redis.call('HGET', IDEM, field)
if seen then
  local first = cjson.decode(seen)
  first.replay, first.epoch = true, s.epoch -- this book (maybe rebuilt since) answers it
  return cjson.encode(first)
end
if s.state ~= 'open' or now >= s.ends_at then
  return cjson.encode(answer(s, 'ended'))
end

local top = math.max(amount, max)
local entries, outbid = {}, ''
local function log(who, cents, proxy)
  s.seq = s.seq + 1
  redis.call('RPUSH', LOG, int(s.seq) .. '|' .. int(cents) .. '|' .. (proxy and '1' or '0') ..
    '|' .. int(now) .. '|' .. who)
  entries[#entries + 1] = {seq = s.seq, bidder = who, amount = cents, proxy = proxy, ts = now}
end

local own = bidder == s.leader
if own then
  if top <= s.leader_max then
    return cjson.encode(answer(s, 'own_bid'))
  end
  s.leader_max, s.leader_name = top, name -- a raised maximum: the price stays
elseif amount < min_next(s) then
  return cjson.encode(answer(s, 'too_low'))
elseif s.leader == '' then
  log(bidder, amount, false)
  s.price, s.leader, s.leader_name, s.leader_max = amount, bidder, name, top
elseif top > s.leader_max then
  if s.leader_max > s.price then
    log(s.leader, s.leader_max, true) -- the old leader's proxy went up to its maximum
  end
  local price = math.max(amount, math.min(top, s.leader_max + increment_at(s.bands, s.leader_max)))
  log(bidder, price, price ~= amount)
  outbid = s.leader
  s.price, s.leader, s.leader_name, s.leader_max = price, bidder, name, top
else
  log(bidder, top, top ~= amount) -- the challenger's maximum is spent, and it is not enough
  s.price = math.min(s.leader_max, top + increment_at(s.bands, top))
  log(s.leader, s.price, true)
end
if s.reserve > s.price and s.leader_max >= s.reserve then
  s.price = s.reserve
  log(s.leader, s.price, true)
end

local extended = false
if #entries > 0 and not own and now + s.window > s.ends_at and s.ext < s.max_ext then
  s.ends_at, s.ext, extended = now + s.window, s.ext + 1, true
end
s.rev = s.rev + 1
redis.call('HSET', STATE, 'price', int(s.price), 'leader', s.leader, 'leader_name',
  s.leader_name, 'leader_max', int(s.leader_max), 'seq', int(s.seq), 'ends_at', int(s.ends_at),
  'ext', int(s.ext), 'rev', int(s.rev))
local reply = answer(s, 'accepted')
reply.accepted, reply.leading, reply.extended, reply.outbid = true, bidder == s.leader, extended, outbid
reply.entries, reply.replay, reply.field = entries, false, field
local encoded = cjson.encode(reply)
redis.call('HSET', IDEM, field, encoded)
return encoded
