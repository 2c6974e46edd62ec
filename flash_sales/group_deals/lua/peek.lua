-- The pool's figures and status ('ok', 'stale', 'fenced'), the groups named in ARGV, and with
-- ARGV[1] = '*' instead the forming groups (at most 200, soonest closing first) and the ids of
-- the filling ones. 'unknown' when the pool is not here.
local s = load_state()
if not s then
  return cjson.encode({code = 'unknown'})
end
local reply = cjson.decode(answer(s, s.state))
reply.pool = pool_status(s, now_ms())
reply.stock, reply.held, reply.filling, reply.sold = s.stock, s.held, s.filling, s.sold
reply.limit, reply.window = s.limit, s.window
local ids = ARGV
if ARGV[1] == '*' then
  ids = redis.call('ZRANGE', DUE, 0, 199)
  local filling = redis.call('SMEMBERS', FILLING)
  if #filling > 0 then
    reply.filling_ids = filling
  end
end
local groups = {}
for _, gid in ipairs(ids) do
  local raw = redis.call('HGET', GROUPS, gid)
  if raw then
    groups[#groups + 1] = {gid, raw}
  end
end
if #groups > 0 then
  reply.groups = groups
end
return cjson.encode(reply)
