-- Ends a filling group as PostgreSQL decided it. ARGV: group id, outcome ('formed': its places
-- are sold; 'failed': a guard of PostgreSQL refused its orders, its places go back).
-- Replay-safe: a group already so ended answers 'settled' again and changes nothing.
-- Codes: 'settled', 'unknown', 'not_filling' (forming, or ended the other way), 'invalid',
-- 'stale', 'fenced'.
local gid, outcome = ARGV[1], ARGV[2]
if not (count_arg(gid, 1, 999999999999999) and (outcome == 'formed' or outcome == 'failed')) then
  return cjson.encode({code = 'invalid'})
end
local s = load_state()
if not s then
  return cjson.encode({code = 'unknown'})
end
local status = pool_status(s, now_ms())
if status ~= 'ok' then
  return cjson.encode({code = status})
end
local g = get_group(gid)
if not g then
  return answer(s, 'unknown')
end
if g.state == outcome then
  return answer(s, 'settled', gid, g)
end
if g.state ~= 'filling' then
  return answer(s, 'not_filling', gid, g)
end
local n = #g.members
s.filling = s.filling - n
if outcome == 'formed' then
  s.sold = s.sold + n
else
  s.remaining = s.remaining + n
  for _, m in ipairs(g.members) do
    buyer_add(m, -1)
  end
end
g.state = outcome
redis.call('SREM', FILLING, gid)
put_group(gid, g)
save_counts(s)
if s.state == 'closed' and s.filling == 0 then
  for _, key in ipairs({STATE, GROUPS, BUYERS, DUE, FILLING}) do
    redis.call('PEXPIRE', key, 600000)
  end
end
return answer(s, 'settled', gid, g)
