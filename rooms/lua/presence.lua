-- One gateway process reports its viewer count for a room; returns the room's total over every
-- process whose report is still fresh, and whether this caller should announce it (at most one
-- announcement per interval across all processes).
-- KEYS[1] presence hash (process -> "count:expires_ms", plus "_announced_at")
-- ARGV[1] process id  ARGV[2] count  ARGV[3] report ttl ms  ARGV[4] announce interval ms
-- Returns {total, announce (0/1)}.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (ms + tonumber(ARGV[3])))
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local total = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field, value = entries[i], entries[i + 1]
  if field ~= '_announced_at' then
    local sep = string.find(value, ':', 1, true)
    local count, expires = tonumber(string.sub(value, 1, sep - 1)), tonumber(string.sub(value, sep + 1))
    if expires > ms then
      total = total + count
    else
      redis.call('HDEL', KEYS[1], field)
    end
  end
end
local announce = 0
local last = tonumber(redis.call('HGET', KEYS[1], '_announced_at') or '0')
if ms - last >= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], '_announced_at', ms)
  announce = 1
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 10)
return {total, announce}
