-- No more reserves; holds already made can still be confirmed, cancelled or expire.
-- Reply: {ok 0|1, reason}.
if redis.call('EXISTS', META) == 0 then
  return {0, 'unknown_pool'}
end
redis.call('HSET', META, 'closed', 1)
return {1, ''}
