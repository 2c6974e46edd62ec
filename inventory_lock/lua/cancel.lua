-- held or offered (a waiter declines the offer) -> released; a hold already due expires instead;
-- either way its unit goes to the next waiter (see release). ARGV: hold id.
-- Reply: {ok 0|1, reason, record}.
local id = ARGV[1]
local h, raw, reason = find_hold(id)
if not h then
  return {0, reason, false}
end
if h.state == 'held' or h.state == 'offered' then
  local now = now_ms()
  if now >= h.exp then
    return {0, 'expired', release(id, h, 'expired', now)}
  end
  return {1, '', release(id, h, 'released', now)}
end
if h.state == 'released' then
  return {1, '', raw}
end
return refuse(h, raw)
