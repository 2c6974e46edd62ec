-- A buyer joins a group, holding one item of stock. ARGV: group id, buyer, start ('1': start
-- the group, its id new from PostgreSQL's sequence; '0': join an existing one).
-- Codes: 'joined', 'filled' (this join filled the group: it is 'filling', its places move from
-- held to filling and PostgreSQL is to write its orders), 'member' (already in it: a replay
-- changes nothing), 'unknown', 'exists' (a start of an id that is another's), 'full' (filling,
-- formed, or at its size), 'failed' (failed, or its window closed: it fails now), 'not_open',
-- 'sold_out', 'limit', 'invalid', 'stale', 'fenced'.
local gid, buyer, start = ARGV[1], ARGV[2], ARGV[3]
if start ~= '0' and start ~= '1' then
  return cjson.encode({code = 'invalid'})
end
local s, now, refused = open_group_call(gid, buyer, 'not_open')
if refused then
  return refused
end
local g = get_group(gid)
if start == '1' then
  if g then
    return answer(s, member_at(g, buyer) and 'member' or 'exists', gid, g)
  end
else
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
  if member_at(g, buyer) then
    return answer(s, 'member', gid, g)
  end
  -- A forming group at its size already (restored from PostgreSQL with a leave whose write
  -- failed) takes nobody more: it fails at its window.
  if g.state ~= 'forming' or #g.members >= s.size then
    return answer(s, 'full', gid, g)
  end
end
if s.state ~= 'open' then
  return answer(s, 'not_open', gid, g)
end
if s.remaining < 1 then
  return answer(s, 'sold_out', gid, g)
end
if tonumber(redis.call('HGET', BUYERS, buyer) or '0') + 1 > s.limit then
  return answer(s, 'limit', gid, g)
end
buyer_add(buyer, 1)
s.remaining, s.held = s.remaining - 1, s.held + 1
if not g then
  g = {state = 'forming', members = {}, closes_at = now + s.window, starter = buyer}
  redis.call('ZADD', DUE, int(g.closes_at), gid)
end
g.members[#g.members + 1] = buyer
local code = 'joined'
if #g.members >= s.size then
  g.state, code = 'filling', 'filled'
  s.held, s.filling = s.held - #g.members, s.filling + #g.members
  redis.call('ZREM', DUE, gid)
  redis.call('SADD', FILLING, gid)
end
put_group(gid, g)
save_counts(s)
return answer(s, code, gid, g)
