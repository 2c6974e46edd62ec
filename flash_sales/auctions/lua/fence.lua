-- Stops the book taking bids for a rebuild: the first step of rebuild.py. ARGV: token, lease ms,
-- replace ('' or an epoch: an `ok` book of that epoch is fenced too, for PostgreSQL found it
-- replaced or behind: see ledger.py's BookReplaced).
-- A missing book gets a placeholder (state 'open', fenced) that refuses bids until restored.
-- Answers 'fenced'; 'busy' while another rebuild's fence of this run is within its lease; 'ok'
-- (nothing done) when the book is up to date (another rebuild finished it meanwhile).
local token = ARGV[1]
local lease = count_arg(ARGV[2], 1, 3600000)
if not (text_arg(token, 1) and lease) then
  return cjson.encode({code = 'invalid'})
end
local now = now_ms()
local s = load_state()
local status = s and book_status(s, now)
local replace = ARGV[3] or ''
if status == 'ok' and replace ~= '' and s.epoch == replace then
  status = 'replaced'
end
if status == 'fenced' or status == 'ok' then
  return cjson.encode({code = status == 'ok' and 'ok' or 'busy'})
end
if not s then
  redis.call('DEL', LOG, IDEM)
  redis.call('HSET', STATE, 'state', 'open')
end
redis.call('PERSIST', STATE)
redis.call('HSET', STATE, 'fence', run_id() .. ':' .. token, 'fence_until', int(now + lease))
return cjson.encode({code = 'fenced'})
