-- Publish one event into a room: append it to the room's log and publish it, atomically, with
-- the next sequence number, the log's epoch and the server's time. Optionally change one field
-- of the room's live state and keep the event in the recent-comments list in the same step.
--
-- Replay-safe: every call carries an event id; a second call with an id already published (a
-- client retry after a timeout) returns the first answer and changes nothing.
--
-- KEYS[1] seq counter   KEYS[2] epoch   KEYS[3] log stream   KEYS[4] state hash
-- KEYS[5] recent list   KEYS[6] published ids (sorted set id -> seq)
-- ARGV[1] channel  ARGV[2] type  ARGV[3] lane  ARGV[4] merge key ("": none; state events only)
-- ARGV[5] data (a JSON object)  ARGV[6] log max length
-- ARGV[7] state op ("set", "del" or "")  ARGV[8] state field  ARGV[9] state value
-- ARGV[10] recent max (0: not kept)  ARGV[11] event id  ARGV[12] ids kept for replays
-- ARGV[13] "SPUBLISH" on a Redis Cluster (the channel carries the room's hash tag, so a room's
-- messages stay on its shard), else "PUBLISH"
-- The caller checked that type, lane and key need no JSON escaping.
-- Returns {seq, epoch, event}.
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

local epoch = redis.call('GET', KEYS[2])
if epoch and redis.call('EXISTS', KEYS[1]) == 1 then
  local seen = redis.call('ZSCORE', KEYS[6], ARGV[11])
  if seen then
    local entry = redis.call('XRANGE', KEYS[3], seen .. '-0', seen .. '-0')
    if entry[1] then
      return {tonumber(seen), epoch, entry[1][2][2]}
    end
  end
else
  -- A new log (first event, or Redis lost the old one or its counter): nothing earlier may be
  -- replayed, so start a new epoch and drop what is left of the old log.
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3], KEYS[5], KEYS[6])
end

local seq = redis.call('INCR', KEYS[1])
local key = ''
if ARGV[4] ~= '' then
  key = ',"key":"' .. ARGV[4] .. '"'
end
local event = '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '","ts":' .. string.format('%d', ts)
  .. ',"type":"' .. ARGV[2] .. '","lane":"' .. ARGV[3] .. '"' .. key .. ',"data":' .. ARGV[5] .. '}'

redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], seq .. '-0', 'e', event)
redis.call('ZADD', KEYS[6], seq, ARGV[11])
redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -tonumber(ARGV[12]) - 1)
if ARGV[7] == 'set' then
  redis.call('HSET', KEYS[4], ARGV[8], ARGV[9])
elseif ARGV[7] == 'del' then
  redis.call('HDEL', KEYS[4], ARGV[8])
end
local recent = tonumber(ARGV[10])
if recent > 0 then
  redis.call('LPUSH', KEYS[5], event)
  redis.call('LTRIM', KEYS[5], 0, recent - 1)
end
redis.call(ARGV[13] == 'SPUBLISH' and 'SPUBLISH' or 'PUBLISH', ARGV[1], event)
return {seq, epoch, event}
