-- Ends the auction: at its deadline by the server's clock (ARGV[1] '0'), or now ('1', a stop;
-- the deadline becomes now). Replay-safe: an ended auction is answered as it ended. The keys
-- of an ended auction expire ARGV[2] ms later (PostgreSQL has it all by then).
-- Answers 'unknown' (no such auction here), 'stale' or 'fenced' (rebuild it first), 'not_due'
-- (still open) or 'ended'.
local s = load_state()
if not s then
  return cjson.encode({code = 'unknown'})
end
local now = now_ms()
local status = book_status(s, now)
if status ~= 'ok' then
  return cjson.encode({code = status})
end
if s.state == 'open' then
  if ARGV[1] ~= '1' and now < s.ends_at then
    return cjson.encode(answer(s, 'not_due'))
  end
  redis.call('HSET', STATE, 'state', 'ended', 'ended_at', int(now))
  if now < s.ends_at then
    redis.call('HSET', STATE, 'ends_at', int(now))
  end
  s = load_state()
end
local grace = count_arg(ARGV[2], 1, 86400000) or 600000
for _, key in ipairs({STATE, LOG, IDEM}) do
  redis.call('PEXPIRE', key, grace)
end
return cjson.encode(answer(s, 'ended'))
