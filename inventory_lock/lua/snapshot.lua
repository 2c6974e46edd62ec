-- Reply: {stock, remaining, held, confirming, confirmed, closed, limit, hold_ms, buyers,
-- 'ok' | 'fenced' | 'stale', stock changes pending, offered, waiting} or nil.
if redis.call('EXISTS', META) == 0 then
  return false
end
local m = redis.call('HMGET', META, 'stock', 'remaining', 'held', 'confirming', 'confirmed',
  'closed', 'limit', 'hold_ms', 'run_id', 'fenced', 'fence_until', 'changes_pending', 'offered')
local state = pool_state(m[9], m[10], m[11], now_ms())
m[9] = redis.call('HLEN', BUYERS)
m[10] = state
m[11] = m[12] or '0'
m[12] = m[13] or '0'
m[13] = redis.call('ZCARD', WAITERS)
return m
