-- Reserves for a batch of requests on one pool, answering each exactly as that many single
-- reserves would in request order (a repeated idempotency key replays the first one's hold, a
-- buyer's count and the remaining stock carry over), while every key is read and written once
-- per batch: the hot path, where each redis.call costs more than the Lua around it.
-- ARGV: pool, reclaim batch, nonce (16 hex digits, random per call), then per request: buyer,
-- qty, idempotency key (1..MAX_RESERVE).
-- Reply: per request {'hold', id, record, remaining, replay 0|1} or {'rejected', reason}; one
-- {'rejected', 'invalid'} for the whole call when the pool, reclaim batch, nonce or arity is bad.
-- A pool that does not sell (see _prelude.lua) answers 'stale' or 'fenced' to every valid
-- request and changes nothing.
local MAX_RESERVE, NEVER = 500, 1e15

local function push(list, a, b)
  list[#list + 1] = a
  list[#list + 1] = b
end
local pool, batch, nonce = ARGV[1], count_arg(ARGV[2], 1, MAX_BATCH), ARGV[3]
local n = (#ARGV - 3) / 3
if not (pool_arg(pool) and batch and type(nonce) == 'string' and #nonce == 16
    and string.match(nonce, '^[%da-f]+$'))
    or n < 1 or n > MAX_RESERVE or n ~= math.floor(n) then
  return {'rejected', 'invalid'}
end

-- Requests: buyers[i], qtys[i], fields[i] (nil for an invalid request); distinct fields, buyers.
local buyers, qtys, fields = {}, {}, {}
local field_list, buyer_list, seen_field, seen_buyer = {}, {}, {}, {}
for i = 1, n do
  local buyer, idem = ARGV[3 * i + 1], ARGV[3 * i + 3]
  local qty = count_arg(ARGV[3 * i + 2], 1, MAX_COUNT)
  if qty and text_arg(buyer) and text_arg(idem) then
    local field = int(#buyer) .. ':' .. buyer .. idem
    buyers[i], qtys[i], fields[i] = buyer, qty, field
    if not seen_field[field] then
      seen_field[field], field_list[#field_list + 1] = buyer, field
    end
    if not seen_buyer[buyer] then
      seen_buyer[buyer], buyer_list[#buyer_list + 1] = true, buyer
    end
  end
end

local reply = {}
local m = redis.call('HMGET', META, 'remaining', 'held', 'seq', 'closed', 'limit', 'hold_ms',
  'next_due', 'run_id', 'fenced', 'fence_until')
local now = now_ms()
local why = m[1] and pool_state(m[8], m[9], m[10], now) or 'unknown_pool'
if why ~= 'ok' then
  for i = 1, n do
    reply[i] = {'rejected', fields[i] and why or 'invalid'}
  end
  return reply
end
local remaining, held, next_due = tonumber(m[1]), tonumber(m[2]), tonumber(m[7] or '0')
local next_due_found = false
if now >= next_due then
  -- As much as n single reserves could reclaim, so a batch never says sold_out where they
  -- would have found stock in expired holds.
  local budget = math.min(batch * n, MAX_BATCH)
  local freed, _, scanned = reclaim(now, budget)
  if freed > 0 then -- what expired went to stock or, as offered holds, to the waitlist
    local after = redis.call('HMGET', META, 'remaining', 'held', 'seq')
    remaining, held, m[3] = tonumber(after[1]), tonumber(after[2]), after[3]
  end
  if scanned < budget then -- nothing due is left: the earliest expiry left is the next bound
    local first = redis.call('ZRANGE', DUE, 0, 0, 'WITHSCORES')
    next_due, next_due_found = tonumber(first[2] or NEVER), true
  end
end

-- Holds already made for these idempotency keys, and their records.
local known, records, known_ids = {}, {}, {}
if #field_list > 0 then
  local ids = redis.call('HMGET', IDEM, unpack(field_list))
  for j, field in ipairs(field_list) do
    if ids[j] then
      known[field], known_ids[#known_ids + 1] = ids[j], ids[j]
    end
  end
end
if #known_ids > 0 then
  local raws = redis.call('HMGET', HOLDS, unpack(known_ids))
  for j, id in ipairs(known_ids) do
    records[id] = raws[j]
  end
  -- A key whose hold is gone or now another buyer's (adopt replaced it with an order from the
  -- system of record) is not a replay: the request is answered as a new one.
  for _, field in ipairs(field_list) do
    local id = known[field]
    local raw = id and records[id]
    if id and not (raw and string.match(raw, '^%l+|%d+|%d+|%d+|(.*)$') == seen_field[field]) then
      known[field] = nil
    end
  end
end

-- Buyers' counts, needed only when a hold can be made at all.
local closed, limit, counts = m[4] == '1', tonumber(m[5]), {}
if not closed and remaining > 0 and #buyer_list > 0 then
  local got = redis.call('HMGET', BUYERS, unpack(buyer_list))
  for j, buyer in ipairs(buyer_list) do
    counts[buyer] = tonumber(got[j] or '0')
  end
end

local seq, exp = tonumber(m[3]), now + tonumber(m[6])
local stamp = '|' .. int(exp) .. '|' .. int(now) .. '|'
local new_holds, new_due, new_idem, changed, changed_list = {}, {}, {}, {}, {}
for i = 1, n do
  local buyer, qty, field = buyers[i], qtys[i], fields[i]
  local id = field and known[field]
  if not field then
    reply[i] = {'rejected', 'invalid'}
  elseif id then
    reply[i] = {'hold', id, records[id], remaining, 1}
  elseif closed then
    reply[i] = {'rejected', 'closed'}
  elseif remaining <= 0 then -- most of a burst ends here: nothing left, whatever the buyer holds
    reply[i] = {'rejected', 'sold_out'}
  elseif counts[buyer] + qty > limit then
    reply[i] = {'rejected', 'limit'}
  elseif remaining < qty then
    reply[i] = {'rejected', 'sold_out'}
  else
    seq = seq + 1
    id = pool .. '.' .. int(seq) .. '-' .. nonce
    local raw = 'held|' .. int(qty) .. stamp .. buyer
    push(new_holds, id, raw)
    push(new_due, int(exp), id)
    push(new_idem, field, id)
    known[field], records[id] = id, raw
    if not changed[buyer] then
      changed[buyer], changed_list[#changed_list + 1] = true, buyer
    end
    counts[buyer] = counts[buyer] + qty
    remaining, held = remaining - qty, held + qty
    reply[i] = {'hold', id, raw, remaining, 0}
  end
end

if #new_holds > 0 then
  local buyer_counts = {}
  for _, buyer in ipairs(changed_list) do
    push(buyer_counts, buyer, int(counts[buyer]))
  end
  redis.call('HSET', HOLDS, unpack(new_holds))
  redis.call('ZADD', DUE, unpack(new_due))
  redis.call('HSET', BUYERS, unpack(buyer_counts))
  redis.call('HSET', IDEM, unpack(new_idem))
  redis.call('HSET', META, 'seq', int(seq), 'held', int(held), 'remaining', int(remaining),
    'next_due', int(math.min(next_due, exp)))
elseif next_due_found then
  redis.call('HSET', META, 'next_due', int(next_due))
end
return reply
