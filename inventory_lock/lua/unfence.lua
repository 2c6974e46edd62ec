-- Ends a repair: the pool sells again, marked with the server's run id. Refused ('stale') when
-- another repair fenced it since, or Redis restarted since the fence (what this repair wrote may
-- be lost): the last repair to fence unfences. ARGV: token. Reply: {ok 0|1, reason}.
if #ARGV ~= 1 or not text_arg(ARGV[1]) then
  return {0, 'invalid'}
end
if redis.call('EXISTS', META) == 0 then
  return {0, 'unknown_pool'}
end
local run = run_id()
if redis.call('HGET', META, 'fenced') ~= run .. ':' .. ARGV[1] then
  return {0, 'stale'}
end
redis.call('HDEL', META, 'fenced', 'fence_until')
redis.call('HSET', META, 'run_id', run)
return {1, ''}
