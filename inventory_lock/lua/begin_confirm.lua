-- held or offered -> confirming, only before the hold expires (server time); a due hold expires here.
-- Again on a confirming hold (a retried confirm) it stamps the hold anew, so the recovery sweep
-- leaves alone a confirm that someone is still retrying. ARGV: hold id.
-- Reply: {ok 0|1, reason, record}.
local id = ARGV[1]
local h, raw, reason = find_hold(id)
if not h then
  return {0, reason, false}
end
local now = now_ms()
if h.state == 'held' or h.state == 'offered' then
  if now >= h.exp then
    return {0, 'expired', release(id, h, 'expired', now)}
  end
  redis.call('ZREM', DUE, id)
  redis.call('ZADD', CONFIRMING, int(now), id)
  return {1, '', shift(id, h, 'confirming', now)}
end
if h.state == 'confirming' then
  redis.call('ZADD', CONFIRMING, int(now), id)
  return {1, '', save(id, h, 'confirming', now)}
end
if h.state == 'confirmed' then
  return {1, '', raw}
end
return refuse(h, raw)
