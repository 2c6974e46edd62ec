-- Opens a group sale's pool. ARGV: stock, size, window_ms, limit, epoch (the pool's name in
-- PostgreSQL), sold (what PostgreSQL has sold of it). Marked with the server's run id.
-- Replay-safe: a pool already here is answered as it is ('exists').
local s = load_state()
if s then
  return answer(s, 'exists')
end
local stock = count_arg(ARGV[1], 0, 1000000)
local size = count_arg(ARGV[2], 2, 100)
local window = count_arg(ARGV[3], 1, 86400000)
local limit = count_arg(ARGV[4], 1, 1000)
local sold = count_arg(ARGV[6] or '0', 0, 1000000)
if not (stock and size and window and limit and sold and text_arg(ARGV[5], 1)) or sold > stock then
  return cjson.encode({code = 'invalid'})
end
redis.call('DEL', GROUPS, BUYERS, DUE, FILLING) -- leftovers of a pool whose state is gone
redis.call('HSET', STATE, 'state', 'open', 'stock', int(stock), 'remaining', int(stock - sold),
  'held', 0, 'filling', 0, 'sold', int(sold), 'size', int(size), 'window', int(window),
  'limit', int(limit), 'epoch', ARGV[5], 'run_id', run_id())
return answer(load_state(), 'opened')
