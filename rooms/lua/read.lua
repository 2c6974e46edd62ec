-- Read what a reader missed, atomically with the log's position: the events after `since` when
-- the reader's epoch is the log's and it is at most `limit` events behind (a bounded XRANGE).
-- KEYS[1] seq counter   KEYS[2] epoch   KEYS[3] log stream
-- ARGV[1] reader's epoch  ARGV[2] since  ARGV[3] limit
-- Returns {epoch ("" if none), last seq, events} with events empty when nothing may be replayed.
local epoch = redis.call('GET', KEYS[2]) or ''
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local since = tonumber(ARGV[2])
local events = {}
if epoch == ARGV[1] and since < last and last - since <= tonumber(ARGV[3]) then
  local first, upto = string.format('%d-0', since + 1), string.format('%d-0', last)
  local entries = redis.call('XRANGE', KEYS[3], first, upto, 'COUNT', ARGV[3])
  for i, entry in ipairs(entries) do
    events[i] = entry[2][2]
  end
end
return {epoch, last, events}
