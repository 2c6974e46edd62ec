-- May this user comment now? Checks mute, slow mode and the rate limit (a sliding window) in one
-- step, and counts the attempt only when it is allowed. Replay-safe: the attempt is recorded by
-- its comment id, and a second call with an id already admitted answers "ok" again.
-- KEYS[1] muted hash (user -> until ms)  KEYS[2] state hash  KEYS[3] user's rate window (sorted
-- set comment id -> ms)  KEYS[4] user's slow-mode stamp (ms of the last comment)
-- ARGV[1] user  ARGV[2] max comments per window  ARGV[3] window ms  ARGV[4] comment id
-- Returns {"ok", 0} or {reason, retry_after_ms} with reason muted | slow_mode | rate_limited.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[3])

if redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  return {'ok', 0}
end

local muted = redis.call('HGET', KEYS[1], ARGV[1])
if muted then
  local muted_until = tonumber(muted) or 0
  if muted_until > ms then
    return {'muted', muted_until - ms}
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
end

local slow = tonumber(redis.call('HGET', KEYS[2], 'slow_mode') or '0') or 0
if slow > 0 then
  -- The stamp holds the time of the user's last comment, so a shorter slow mode applies at once.
  local last = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  if ms - last < slow * 1000 then
    return {'slow_mode', last + slow * 1000 - ms}
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ms - window)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {'rate_limited', math.max(tonumber(oldest[2]) + window - ms, 1)}
end
redis.call('ZADD', KEYS[3], ms, ARGV[4])
redis.call('PEXPIRE', KEYS[3], window)
if slow > 0 then
  redis.call('SET', KEYS[4], string.format('%d', ms), 'PX', slow * 1000)
end
return {'ok', 0}
