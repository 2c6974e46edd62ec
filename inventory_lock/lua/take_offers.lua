-- Takes up to `limit` ids from the queue of offers made (see offer_freed) for the caller to tell
-- their buyers; each is taken once, by one process. ARGV: limit.
-- Reply: {id, record, ...} of those still offered (one that lapsed or was declined meanwhile is
-- left out). Nothing while the pool is stale or fenced: restored from an earlier snapshot, its
-- offers may be orders already; its repair decides them first.
local limit = count_arg(ARGV[1], 1, MAX_BATCH)
if not limit or redis.call('EXISTS', META) == 0 then
  return {}
end
local m = redis.call('HMGET', META, 'run_id', 'fence', 'fence_until')
if pool_state(m[1], m[2], m[3], now_ms()) ~= 'ok' then
  return {}
end
local reply = {}
for _ = 1, limit do
  local id = redis.call('LPOP', OFFERS)
  if not id then
    break
  end
  local raw = redis.call('HGET', HOLDS, id)
  if raw and string.sub(raw, 1, 8) == 'offered|' then
    reply[#reply + 1] = id
    reply[#reply + 1] = raw
  end
end
return reply
