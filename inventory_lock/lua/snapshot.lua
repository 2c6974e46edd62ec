-- Reply: {stock, remaining, held, confirming, confirmed, closed, limit, hold_ms, buyers} or nil.
if redis.call('EXISTS', META) == 0 then
  return false
end
local m = redis.call('HMGET', META, 'stock', 'remaining', 'held', 'confirming', 'confirmed',
  'closed', 'limit', 'hold_ms')
m[9] = redis.call('HLEN', BUYERS)
return m
