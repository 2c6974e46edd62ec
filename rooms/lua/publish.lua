-- Publish one event into a room: append it to the room's log and PUBLISH it, atomically, with
-- the next sequence number, the log's epoch and the server's time. Optionally change one field
-- of the room's live state and keep the event in the recent-comments list in the same step.
--
-- KEYS[1] seq counter   KEYS[2] epoch   KEYS[3] log stream   KEYS[4] state hash   KEYS[5] recent list
-- ARGV[1] channel  ARGV[2] type  ARGV[3] lane  ARGV[4] data (a JSON object)  ARGV[5] log max length
-- ARGV[6] state op ("set", "del" or "")  ARGV[7] state field  ARGV[8] state value
-- ARGV[9] recent max (0: not kept)
-- Returns {seq, epoch, event}.
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)

local epoch = redis.call('GET', KEYS[2])
if not epoch then
  -- A new log (first event, or Redis lost the old one): nothing earlier may be replayed.
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[1], KEYS[3], KEYS[5])
end

local seq = redis.call('INCR', KEYS[1])
local event = '{"seq":' .. seq .. ',"epoch":"' .. epoch .. '","ts":' .. ts .. ',"type":"'
  .. ARGV[2] .. '","lane":"' .. ARGV[3] .. '","data":' .. ARGV[4] .. '}'

redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], seq .. '-0', 'e', event)
if ARGV[6] == 'set' then
  redis.call('HSET', KEYS[4], ARGV[7], ARGV[8])
elseif ARGV[6] == 'del' then
  redis.call('HDEL', KEYS[4], ARGV[7])
end
local recent = tonumber(ARGV[9])
if recent > 0 then
  redis.call('LPUSH', KEYS[5], event)
  redis.call('LTRIM', KEYS[5], 0, recent - 1)
end
redis.call('PUBLISH', ARGV[1], event)
return {seq, epoch, event}
