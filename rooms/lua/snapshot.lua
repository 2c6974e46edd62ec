-- Everything a snapshot reads from Redis, in one atomic step, so the log position it reports is
-- exactly the one its state reflects: a reader resuming from it neither misses nor repeats.
-- KEYS[1] seq counter   KEYS[2] epoch   KEYS[3] state hash   KEYS[4] recent comments list
-- ARGV[1] recent max
-- Returns {epoch ("" if none), last seq, state (flat field/value list), recent comments, now ms}.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return {
  redis.call('GET', KEYS[2]) or '',
  tonumber(redis.call('GET', KEYS[1]) or '0'),
  redis.call('HGETALL', KEYS[3]),
  redis.call('LRANGE', KEYS[4], 0, tonumber(ARGV[1]) - 1),
  ms,
}
