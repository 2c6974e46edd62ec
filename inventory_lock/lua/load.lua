-- A new pool: `stock` remaining, nothing held. ARGV: pool, stock, limit per buyer, hold ms.
-- Reply: {ok 0|1, reason}; 'exists' while the pool exists.
local pool = ARGV[1]
local stock = count_arg(ARGV[2], 0, MAX_COUNT)
local limit = count_arg(ARGV[3], 1, MAX_COUNT)
local hold_ms = count_arg(ARGV[4], 1, MAX_HOLD_MS)
if not (pool_arg(pool) and stock and limit and hold_ms) or #ARGV ~= 4 then
  return {0, 'invalid'}
end
if redis.call('EXISTS', META) == 1 then
  return {0, 'exists'}
end
create_pool(stock, limit, hold_ms)
return {1, ''}
