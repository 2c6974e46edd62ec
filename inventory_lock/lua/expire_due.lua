-- Returns holds due by server time to stock. ARGV: batch.
-- Reply: {holds, qty, remaining}, or nil for an unknown pool.
local batch = count_arg(ARGV[1], 1, MAX_BATCH)
if not batch or redis.call('EXISTS', META) == 0 then
  return false
end
local holds, qty = reclaim(now_ms(), batch)
return {holds, qty, redis.call('HGET', META, 'remaining')}
