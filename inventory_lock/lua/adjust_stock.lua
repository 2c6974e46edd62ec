-- The Redis side of a stock change keyed by its request id (replay-safe): units taken out are
-- taken from `remaining` at once, so no reserve can hold them meanwhile, and a change can never
-- take what is held, being confirmed or confirmed; units added are only recorded here, and come
-- into `remaining` when the change is settled as applied (lua/settle_stock.lua) after the
-- system of record took it. Either way stock = remaining + held + confirming + confirmed.
-- ARGV: request id, delta (a signed integer, not 0).
-- Reply: {1, state, stock, remaining} (state 'pending' or 'done': a replay answers as the first
-- call), or {0, reason, floor} with reason 'too_low' (floor: held + confirming + confirmed),
-- 'undone' (this request was rolled back), 'mismatch' (this id was used with another delta),
-- 'closed', 'unknown_pool', 'stale', 'fenced' or 'invalid'.
local id, raw_delta = ARGV[1], ARGV[2]
local sign, digits = string.match(type(raw_delta) == 'string' and raw_delta or '', '^(%-?)(%d+)$')
local size = digits and count_arg(digits, 1, MAX_COUNT)
if #ARGV ~= 2 or not text_arg(id) or not size then
  return {0, 'invalid', 0}
end
local delta = sign == '-' and -size or size
local m = redis.call('HMGET', META, 'stock', 'remaining', 'closed', 'run_id', 'fenced',
  'fence_until')
if not m[1] then
  return {0, 'unknown_pool', 0}
end
local stock, remaining = tonumber(m[1]), tonumber(m[2])
local known = redis.call('HGET', CHANGES, id)
if known then
  local state, was = string.match(known, '^(%l+)|(%-?%d+)|')
  if tonumber(was) ~= delta then
    return {0, 'mismatch', 0}
  end
  if state == 'undone' then
    return {0, 'undone', 0}
  end
  return {1, state, stock, remaining}
end
local why = pool_state(m[4], m[5], m[6], now_ms())
if why ~= 'ok' then
  return {0, why, 0}
end
if m[3] == '1' then
  return {0, 'closed', 0}
end
if delta < 0 and remaining < size then
  return {0, 'too_low', stock - remaining}
end
if stock + delta > MAX_COUNT then
  return {0, 'invalid', 0}
end
if delta < 0 then
  stock, remaining = stock + delta, remaining + delta
  redis.call('HSET', META, 'stock', int(stock), 'remaining', int(remaining))
end
redis.call('HSET', CHANGES, id, 'pending|' .. int(delta) .. '|' .. int(now_ms()))
redis.call('HINCRBY', META, 'changes_pending', 1)
return {1, 'pending', stock, remaining}
