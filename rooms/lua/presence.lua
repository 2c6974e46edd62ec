-- One gateway process reports its viewer count for a room; returns the room's total over every
-- process whose report is still fresh, and whether this caller should announce it (at most one
-- announcement per interval across all processes). Replay-safe: a report sets, never adds.
-- KEYS[1] presence hash (process -> "count:expires_ms", plus "_announced_at")
-- ARGV[1] process id ("": only read)  ARGV[2] count  ARGV[3] report ttl ms
-- ARGV[4] announce interval ms (0: never announce)
-- Returns {total, announce (0/1)}.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ARGV[1] ~= '' then
  if tonumber(ARGV[2]) > 0 then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. string.format('%d', ms + ttl))
  else
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
end
local total = 0
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local field, value = entries[i], entries[i + 1]
  if field ~= '_announced_at' then
    local count, expires = string.match(value, '^(%d+):(%d+)$')
    if count and tonumber(expires) > ms then
      total = total + tonumber(count)
    else
      redis.call('HDEL', KEYS[1], field)
    end
  end
end
local announce = 0
local interval = tonumber(ARGV[4])
if ARGV[1] ~= '' and interval > 0 then
  local last = tonumber(redis.call('HGET', KEYS[1], '_announced_at') or '0')
  if ms - last >= interval then
    redis.call('HSET', KEYS[1], '_announced_at', string.format('%d', ms))
    announce = 1
  end
end
if redis.call('HLEN', KEYS[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], math.max(ttl * 10, tonumber(ARGV[4]) * 2))
end
return {total, announce}
