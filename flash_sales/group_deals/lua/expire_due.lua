-- Fails the forming groups whose window has closed by the server's clock (at most ARGV[1]),
-- their holds back to the stock. Replay-safe: a failed group is not due. Answers
-- {code, failed = [[group id, members...], ...]}; 'stale' or 'fenced' changes nothing.
local most = count_arg(ARGV[1], 1, 10000) or 100
local s = load_state()
if not s then
  return cjson.encode({code = 'unknown'})
end
local now = now_ms()
local status = pool_status(s, now)
if status ~= 'ok' then
  return cjson.encode({code = status})
end
local failed = {}
for _, gid in ipairs(redis.call('ZRANGEBYSCORE', DUE, '-inf', int(now), 'LIMIT', 0, most)) do
  local g = get_group(gid)
  if g and g.state == 'forming' then
    local entry = {gid}
    for _, m in ipairs(g.members) do
      entry[#entry + 1] = m
    end
    fail_forming(s, gid, g)
    failed[#failed + 1] = entry
  else
    redis.call('ZREM', DUE, gid)
  end
end
if #failed > 0 then
  save_counts(s)
end
local reply = cjson.decode(answer(s, 'ok'))
if #failed > 0 then
  reply.failed = failed
end
return cjson.encode(reply)
