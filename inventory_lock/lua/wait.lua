-- Puts a buyer at the end of the pool's waitlist, once: only while nothing is left to reserve,
-- only below the limit per buyer, and at most `max` waiting. ARGV: buyer, max.
-- Reply: {1, '', position} (1 is the first to be offered a freed unit) or {0, reason, position}
-- with reason 'already_waiting' (position: theirs), 'not_sold_out', 'limit', 'full', 'closed',
-- 'unknown_pool' or 'invalid' (position 0).
local buyer, max = ARGV[1], count_arg(ARGV[2], 1, MAX_COUNT)
if #ARGV ~= 2 or not (text_arg(buyer) and max) then
  return {0, 'invalid', 0}
end
local m = redis.call('HMGET', META, 'remaining', 'closed', 'limit')
if not m[1] then
  return {0, 'unknown_pool', 0}
end
if m[2] == '1' then
  return {0, 'closed', 0}
end
local rank = redis.call('ZRANK', WAITERS, buyer)
if rank then
  return {0, 'already_waiting', rank + 1}
end
if tonumber(m[1]) > 0 then
  return {0, 'not_sold_out', 0}
end
if tonumber(redis.call('HGET', BUYERS, buyer) or '0') >= tonumber(m[3]) then
  return {0, 'limit', 0}
end
local waiting = redis.call('ZCARD', WAITERS)
if waiting >= max then
  return {0, 'full', 0}
end
redis.call('ZADD', WAITERS, redis.call('HINCRBY', META, 'wl_seq', 1), buyer)
return {1, '', waiting + 1}
