-- ARGV: pool, buyer, qty, idempotency key, reclaim batch.
-- Reply: {'hold', id, record, remaining, replay 0|1} or {'rejected', reason}.
-- Counters are read once and written once (the hot path: every buy attempt runs this).
local pool, buyer, idem = ARGV[1], ARGV[2], ARGV[4]
local qty = count_arg(ARGV[3], 1, MAX_COUNT)
local batch = count_arg(ARGV[5], 1, MAX_BATCH)
if not (pool_arg(pool) and text_arg(buyer) and text_arg(idem) and qty and batch) then
  return {'rejected', 'invalid'}
end
local m = redis.call('HMGET', META, 'remaining', 'held', 'seq', 'closed', 'limit', 'hold_ms')
if not m[1] then
  return {'rejected', 'unknown_pool'}
end
local now = now_ms()
local _, returned = reclaim(now, batch)
local remaining, held = tonumber(m[1]) + returned, tonumber(m[2]) - returned
local idem_field = int(#buyer) .. ':' .. buyer .. idem
local known = redis.call('HGET', IDEM, idem_field)
if known then
  return {'hold', known, redis.call('HGET', HOLDS, known), remaining, 1}
end
if m[4] == '1' then
  return {'rejected', 'closed'}
end
if remaining == 0 then -- most of a burst ends here: nothing left, whatever the buyer holds
  return {'rejected', 'sold_out'}
end
if tonumber(redis.call('HGET', BUYERS, buyer) or '0') + qty > tonumber(m[5]) then
  return {'rejected', 'limit'}
end
if remaining < qty then
  return {'rejected', 'sold_out'}
end
local seq = tonumber(m[3]) + 1
local id = pool .. '.' .. int(seq)
local h = {qty = qty, exp = now + tonumber(m[6]), buyer = buyer}
local raw = save(id, h, 'held', now)
redis.call('HSET', META, 'seq', int(seq), 'held', int(held + qty), 'remaining', int(remaining - qty))
redis.call('HINCRBY', BUYERS, buyer, qty)
redis.call('ZADD', DUE, int(h.exp), id)
redis.call('HSET', IDEM, idem_field, id)
return {'hold', id, raw, remaining - qty, 0}
