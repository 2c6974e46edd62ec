-- confirming -> confirmed. ARGV: hold id. Reply: {ok 0|1, reason, record}.
local id = ARGV[1]
local h, raw, reason = find_hold(id)
if not h then
  return {0, reason, false}
end
if h.state == 'confirming' then
  redis.call('ZREM', CONFIRMING, id)
  return {1, '', shift(id, h, 'confirmed', now_ms())}
end
if h.state == 'confirmed' then
  return {1, '', raw}
end
return refuse(h, raw)
