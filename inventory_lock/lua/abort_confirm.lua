-- confirming -> held (its original expiry applies again) or, with release, -> released.
-- ARGV: hold id, release 0|1. Reply: {ok 0|1, reason, record}.
local id, release_arg = ARGV[1], ARGV[2]
if release_arg ~= '0' and release_arg ~= '1' then
  return {0, 'invalid', false}
end
local h, raw, reason = find_hold(id)
if not h then
  return {0, reason, false}
end
local to_stock = release_arg == '1'
if h.state == 'confirming' then
  if to_stock then
    return {1, '', release(id, h, 'released', now_ms())}
  end
  redis.call('ZREM', CONFIRMING, id)
  redis.call('ZADD', DUE, int(h.exp), id)
  if h.exp < tonumber(redis.call('HGET', META, 'next_due') or '0') then
    redis.call('HSET', META, 'next_due', int(h.exp))
  end
  return {1, '', shift(id, h, 'held', now_ms())}
end
if (to_stock and h.state == 'released') or (not to_stock and h.state == 'held') then
  return {1, '', raw}
end
return refuse(h, raw)
