-- Closes the pool: no more starts nor joins; every forming group fails now (filling ones are
-- still decided by PostgreSQL). The keys expire ARGV[1] ms later once nothing is filling.
-- Replay-safe. Answers like expire_due ('closed', with the groups it failed).
local grace = count_arg(ARGV[1], 1, 86400000) or 600000
local s = load_state()
if not s then
  return cjson.encode({code = 'unknown'})
end
local status = pool_status(s, now_ms())
if status ~= 'ok' then
  return cjson.encode({code = status})
end
local failed = {}
for _, gid in ipairs(redis.call('ZRANGE', DUE, 0, -1)) do
  local g = get_group(gid)
  if g and g.state == 'forming' then
    local entry = {gid}
    for _, m in ipairs(g.members) do
      entry[#entry + 1] = m
    end
    fail_forming(s, gid, g)
    failed[#failed + 1] = entry
  end
end
redis.call('DEL', DUE)
s.state = 'closed'
redis.call('HSET', STATE, 'state', 'closed')
save_counts(s)
if s.filling == 0 then
  for _, key in ipairs({STATE, GROUPS, BUYERS, DUE, FILLING}) do
    redis.call('PEXPIRE', key, grace)
  end
end
local reply = cjson.decode(answer(s, 'closed'))
if #failed > 0 then
  reply.failed = failed
end
return cjson.encode(reply)
