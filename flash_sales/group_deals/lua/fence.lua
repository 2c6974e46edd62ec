-- Stops the pool for a rebuild: the first step of rebuild.py. ARGV: token, lease ms.
-- A missing pool gets a placeholder (fenced) that refuses everything until restored.
-- Answers 'fenced'; 'busy' while another rebuild's fence of this run is within its lease; 'ok'
-- (nothing done) when the pool is up to date (another rebuild finished it meanwhile).
local token = ARGV[1]
local lease = count_arg(ARGV[2], 1, 3600000)
if not (text_arg(token, 1) and lease) then
  return cjson.encode({code = 'invalid'})
end
local now = now_ms()
local s = load_state()
local status = s and pool_status(s, now)
if status == 'fenced' or status == 'ok' then
  return cjson.encode({code = status == 'ok' and 'ok' or 'busy'})
end
if not s then
  redis.call('DEL', GROUPS, BUYERS, DUE, FILLING)
  redis.call('HSET', STATE, 'state', 'closed')
end
redis.call('PERSIST', STATE)
redis.call('HSET', STATE, 'fence', run_id() .. ':' .. token, 'fence_until', int(now + lease))
return cjson.encode({code = 'fenced'})
