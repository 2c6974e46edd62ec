-- Stops a pool selling until unfence: the first step of a repair from the system of record.
-- A missing pool is created (all of `stock` remaining) for the repair to adopt what was sold.
-- The fence names this repair (its token) and the server's run id, and lasts `lease ms`: only
-- the last repair to fence may unfence, and only if Redis did not restart since.
-- ARGV: pool, stock, limit per buyer, hold ms, token, lease ms.
-- Reply: {ok 0|1, 'created' | '' | 'invalid'}.
local pool, token = ARGV[1], ARGV[5]
local stock = count_arg(ARGV[2], 0, MAX_COUNT)
local limit = count_arg(ARGV[3], 1, MAX_COUNT)
local hold_ms = count_arg(ARGV[4], 1, MAX_HOLD_MS)
local lease = count_arg(ARGV[6], 1, MAX_HOLD_MS)
if not (pool_arg(pool) and stock and limit and hold_ms and lease and text_arg(token))
    or #ARGV ~= 6 then
  return {0, 'invalid'}
end
local created = redis.call('EXISTS', META) == 0
if created then
  create_pool(stock, limit, hold_ms)
end
redis.call('HSET', META, 'fenced', run_id() .. ':' .. token, 'fence_until', int(now_ms() + lease))
return {1, created and 'created' or ''}
