-- Rebuilds a fenced pool from PostgreSQL in one call of the rebuild that fenced it.
-- ARGV: token, the state as a JSON object of strings, the buyers' places as a JSON object,
-- then pairs of group id and group JSON (the forming groups PostgreSQL has). The pool takes
-- changes again, marked with the server's run id. Answers 'lost' when the fence is no longer
-- this rebuild's (another took it, its lease ran out, or Redis restarted), else 'restored'.
local token = ARGV[1]
local s = load_state()
local now = now_ms()
if not (s and text_arg(token, 1)) or s.fence ~= run_id() .. ':' .. token or now >= s.fence_until then
  return cjson.encode({code = 'lost'})
end
redis.call('DEL', STATE, GROUPS, BUYERS, DUE, FILLING)
local fields = {}
for k, v in pairs(cjson.decode(ARGV[2])) do
  fields[#fields + 1] = k
  fields[#fields + 1] = v
end
redis.call('HSET', STATE, 'run_id', run_id(), unpack(fields))
for buyer, n in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', BUYERS, buyer, int(n))
end
for i = 4, #ARGV - 1, 2 do
  redis.call('HSET', GROUPS, ARGV[i], ARGV[i + 1])
  local g = cjson.decode(ARGV[i + 1])
  if g.state == 'forming' then
    redis.call('ZADD', DUE, int(g.closes_at), ARGV[i])
  end
end
return answer(load_state(), 'restored')
