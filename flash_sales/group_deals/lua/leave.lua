-- A member leaves a forming group: their hold goes back to the stock. ARGV: group id, buyer.
-- A group left by its last member fails. Codes: 'left', 'not_member' (a replay changes
-- nothing), 'unknown', 'full' (filling or formed), 'failed', 'invalid', 'stale', 'fenced'.
local gid, buyer = ARGV[1], ARGV[2]
local s, now, refused = open_group_call(gid, buyer, 'unknown')
if refused then
  return refused
end
local g = get_group(gid)
if not g then
  return answer(s, 'unknown')
end
if g.state == 'forming' and now >= g.closes_at then
  fail_forming(s, gid, g)
  save_counts(s)
end
if g.state == 'failed' then
  return answer(s, 'failed', gid, g)
end
if g.state ~= 'forming' then
  return answer(s, 'full', gid, g)
end
local at = member_at(g, buyer)
if not at then
  return answer(s, 'not_member', gid, g)
end
table.remove(g.members, at)
buyer_add(buyer, -1)
s.remaining, s.held = s.remaining + 1, s.held - 1
if #g.members == 0 then
  g.state = 'failed'
  redis.call('ZREM', DUE, gid)
end
put_group(gid, g)
save_counts(s)
return answer(s, 'left', gid, g)
