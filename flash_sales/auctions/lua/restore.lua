-- Rebuilds a fenced book from PostgreSQL, in one or more calls of the rebuild that fenced it.
-- ARGV: token, finish ('1': the book takes bids again, marked with the server's run id), the
-- state as a JSON object of strings ('' on later calls: it was restored by the first), then
-- pairs of idempotency field and answer (the accepted calls PostgreSQL has).
-- The first call empties the log (its base becomes the restored seq: PostgreSQL keeps the
-- bids) and the idempotency record. Answers 'lost' when the fence is no longer this rebuild's
-- (another took it, its lease ran out, or Redis restarted), else 'restored'.
local token, finish, state = ARGV[1], ARGV[2], ARGV[3]
local s = load_state()
local now = now_ms()
if not (s and text_arg(token, 1)) or s.fence ~= run_id() .. ':' .. token or now >= s.fence_until then
  return cjson.encode({code = 'lost'})
end
if state ~= '' then
  redis.call('DEL', STATE, LOG, IDEM)
  local fields = {}
  for k, v in pairs(cjson.decode(state)) do
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  redis.call('HSET', STATE, 'fence', s.fence, 'fence_until', int(s.fence_until),
    unpack(fields))
end
for i = 4, #ARGV - 1, 2 do
  redis.call('HSET', IDEM, ARGV[i], ARGV[i + 1])
end
if finish == '1' then
  redis.call('HSET', STATE, 'run_id', run_id())
  redis.call('HDEL', STATE, 'fence', 'fence_until')
end
return cjson.encode(answer(load_state(), 'restored'))
