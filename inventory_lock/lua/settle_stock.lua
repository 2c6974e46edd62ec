-- Ends a pending stock change the way the system of record decided: 'applied' adds the units of
-- an increase to stock and remaining (a decrease took them out already); 'void' gives back the
-- units a decrease took out. Units that come back go to the waitlist first (see offer_freed).
-- Replay-safe: a settled change answers as it ended.
-- ARGV: request id, 'applied' | 'void'.
-- Reply: {1, state ('done' or 'undone'), stock, remaining}, or {0, reason, 0} with reason
-- 'not_found', 'wrong_state' (settled the other way before), 'unknown_pool' or 'invalid'.
local id, outcome = ARGV[1], ARGV[2]
if #ARGV ~= 2 or not text_arg(id) or (outcome ~= 'applied' and outcome ~= 'void') then
  return {0, 'invalid', 0}
end
local m = redis.call('HMGET', META, 'stock', 'remaining')
if not m[1] then
  return {0, 'unknown_pool', 0}
end
local stock, remaining = tonumber(m[1]), tonumber(m[2])
local known = redis.call('HGET', CHANGES, id)
if not known then
  return {0, 'not_found', 0}
end
local state, raw_delta = string.match(known, '^(%l+)|(%-?%d+)|')
local delta = tonumber(raw_delta)
local ends = outcome == 'applied' and 'done' or 'undone'
if state ~= 'pending' then
  if state ~= ends then
    return {0, 'wrong_state', 0}
  end
  return {1, state, stock, remaining}
end
if (outcome == 'applied' and delta > 0) or (outcome == 'void' and delta < 0) then
  local back = outcome == 'applied' and delta or -delta
  stock, remaining = stock + back, remaining + offer_freed(back, now_ms())
  redis.call('HSET', META, 'stock', int(stock), 'remaining', int(remaining))
end
redis.call('HSET', CHANGES, id, ends .. '|' .. int(delta) .. '|' .. int(now_ms()))
redis.call('HINCRBY', META, 'changes_pending', -1)
return {1, ends, stock, remaining}
