-- A new pool, or one rebuilt from durable counts after Redis lost its keys: each buyer's
-- confirmed quantity becomes one confirmed record, so check() recomputes the same totals.
-- ARGV: pool, stock, limit per buyer, hold ms, then (buyer, confirmed qty) pairs if any.
-- Reply: {ok 0|1, reason}.
local pool = ARGV[1]
local stock = count_arg(ARGV[2], 0, MAX_COUNT)
local limit = count_arg(ARGV[3], 1, MAX_COUNT)
local hold_ms = count_arg(ARGV[4], 1, MAX_HOLD_MS)
if not (pool_arg(pool) and stock and limit and hold_ms) or #ARGV % 2 ~= 0 then
  return {0, 'invalid'}
end
local seen, total = {}, 0
for i = 5, #ARGV, 2 do
  local buyer, qty = ARGV[i], count_arg(ARGV[i + 1], 1, MAX_COUNT)
  if not (text_arg(buyer) and qty) or qty > limit or seen[buyer] then
    return {0, 'invalid'}
  end
  seen[buyer], total = true, total + qty
end
if total > stock then
  return {0, 'invalid'}
end
if redis.call('EXISTS', META) == 1 then
  return {0, 'exists'}
end
-- Leftovers of a pool whose meta key is gone belong to no pool.
redis.call('DEL', HOLDS, BUYERS, DUE, CONFIRMING, IDEM)
-- The hold counter starts at the server time in microseconds, so hold ids stay unique across a
-- drop, or a loss of the keys, followed by a new load.
local sec, usec = server_time()
local now = sec * 1000 + math.floor(usec / 1000)
redis.call('HSET', META, 'stock', int(stock), 'remaining', int(stock - total), 'held', 0,
  'confirming', 0, 'confirmed', int(total), 'limit', int(limit), 'hold_ms', int(hold_ms),
  'closed', 0, 'seq', int(sec * 1000000 + usec))
for i = 5, #ARGV, 2 do
  local buyer, qty = ARGV[i], tonumber(ARGV[i + 1])
  local id = pool .. '.' .. int(redis.call('HINCRBY', META, 'seq', 1))
  save(id, {qty = qty, exp = now, buyer = buyer}, 'confirmed', now)
  redis.call('HSET', BUYERS, buyer, int(qty))
end
return {1, ''}
