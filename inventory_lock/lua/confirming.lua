-- The oldest confirming holds, for a recovery sweep. ARGV: limit. Reply: {id, record, ...}.
local limit = count_arg(ARGV[1], 1, MAX_BATCH)
if not limit then
  return {}
end
local reply = {}
for _, id in ipairs(redis.call('ZRANGE', CONFIRMING, 0, limit - 1)) do
  local raw = redis.call('HGET', HOLDS, id)
  if raw then
    reply[#reply + 1] = id
    reply[#reply + 1] = raw
  end
end
return reply
