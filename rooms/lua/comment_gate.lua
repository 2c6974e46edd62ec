-- May this user comment now? Checks mute, slow mode and the rate limit in one step, and counts
-- the attempt only when it is allowed.
-- KEYS[1] muted hash (user -> until ms)  KEYS[2] state hash  KEYS[3] user's rate window
-- KEYS[4] user's slow-mode stamp
-- ARGV[1] user  ARGV[2] max comments per window  ARGV[3] window ms
-- Returns {"ok"} or {reason, retry_after_ms} with reason muted | slow_mode | rate_limited.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

local muted_until = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if muted_until > ms then
  return {'muted', muted_until - ms}
end

local slow = tonumber(redis.call('HGET', KEYS[2], 'slow_mode') or '0')
if slow > 0 then
  local ttl = redis.call('PTTL', KEYS[4])
  if ttl > 0 then
    return {'slow_mode', ttl}
  end
end

local count = tonumber(redis.call('GET', KEYS[3]) or '0')
if count >= tonumber(ARGV[2]) then
  return {'rate_limited', math.max(redis.call('PTTL', KEYS[3]), 1)}
end
if count == 0 then
  redis.call('SET', KEYS[3], 1, 'PX', ARGV[3])
else
  redis.call('INCR', KEYS[3])
end
if slow > 0 then
  redis.call('SET', KEYS[4], 1, 'PX', slow * 1000)
end
return {'ok', 0}
