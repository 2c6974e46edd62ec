-- Ends a repair: the pool sells again, marked with the server's run id. Refused ('stale') when
-- another repair fenced it since, or Redis restarted since the fence (what this repair wrote may
-- be lost): the last repair to fence unfences. With a stock (the system of record's, read while
-- the pool was fenced) the pool takes it: `remaining` moves by the difference, so stock =
-- remaining + held + confirming + confirmed still holds (remaining may go below zero when Redis
-- had promised more than there is: those holds fail at confirm).
-- ARGV: token [, stock]. Reply: {ok 0|1, reason}.
local stock = ARGV[2] and count_arg(ARGV[2], 0, MAX_COUNT)
if #ARGV < 1 or #ARGV > 2 or not text_arg(ARGV[1]) or (ARGV[2] and not stock) then
  return {0, 'invalid'}
end
if redis.call('EXISTS', META) == 0 then
  return {0, 'unknown_pool'}
end
local run = run_id()
if redis.call('HGET', META, 'fenced') ~= run .. ':' .. ARGV[1] then
  return {0, 'stale'}
end
if stock then -- units it gains go to the waitlist first (see offer_freed)
  local gained = stock - tonumber(redis.call('HGET', META, 'stock'))
  redis.call('HSET', META, 'stock', int(stock))
  if gained > 0 then
    gained = offer_freed(gained, now_ms())
  end
  redis.call('HINCRBY', META, 'remaining', gained)
end
redis.call('HDEL', META, 'fenced', 'fence_until')
redis.call('HSET', META, 'run_id', run)
return {1, ''}
