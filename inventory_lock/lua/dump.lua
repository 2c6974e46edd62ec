-- Every key of the pool at one instant, for check(). Reply:
-- {meta pairs, hold pairs, buyer pairs, due id/score pairs, confirming ids, idempotency targets,
-- stock change records, waiter/ticket pairs, offers to announce} or nil for an unknown pool.
if redis.call('EXISTS', META) == 0 then
  return false
end
return {redis.call('HGETALL', META), redis.call('HGETALL', HOLDS), redis.call('HGETALL', BUYERS),
  redis.call('ZRANGE', DUE, 0, -1, 'WITHSCORES'), redis.call('ZRANGE', CONFIRMING, 0, -1),
  redis.call('HVALS', IDEM), redis.call('HVALS', CHANGES),
  redis.call('ZRANGE', WAITERS, 0, -1, 'WITHSCORES'), redis.call('LRANGE', OFFERS, 0, -1)}
