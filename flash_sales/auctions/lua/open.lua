-- Opens the auction now, by the server's clock: it ends after ARGV duration (ms).
-- ARGV: start, bands, duration_ms, window_ms, max_ext, reserve (0: none), epoch (the book's
-- name in PostgreSQL). The book is marked with the server's run id.
-- Replay-safe: an auction already here (open or ended) is answered as it is ('exists').
local s = load_state()
if s then
  return cjson.encode(answer(s, 'exists'))
end
local start = count_arg(ARGV[1], 1, MAX_CENTS)
local bands = ARGV[2]
local duration = count_arg(ARGV[3], 1, 86400000)
local window = count_arg(ARGV[4], 0, 3600000)
local max_ext = count_arg(ARGV[5], 0, 1000)
local reserve = count_arg(ARGV[6], 0, MAX_CENTS)
local epoch = ARGV[7]
if not (start and duration and window and max_ext and reserve and text_arg(epoch, 1))
    or type(bands) ~= 'string'
    or not string.match(bands, '^0:%d+') or not string.match(bands, '^[%d:,]+$') then
  return cjson.encode({code = 'invalid'})
end
local now = now_ms()
redis.call('DEL', LOG, IDEM) -- leftovers of an auction whose state is gone belong to nothing
redis.call('HSET', STATE, 'state', 'open', 'start', int(start), 'bands', bands,
  'window', int(window), 'max_ext', int(max_ext), 'ext', 0, 'started_at', int(now),
  'ends_at', int(now + duration), 'ended_at', 0, 'price', 0, 'leader', '', 'leader_name', '',
  'leader_max', 0, 'reserve', int(reserve), 'seq', 0, 'rev', 0, 'epoch', epoch,
  'run_id', run_id(), 'log_base', 0)
return cjson.encode(answer(load_state(), 'opened'))
