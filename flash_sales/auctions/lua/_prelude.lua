-- Prepended to every script of this folder when it is loaded.
-- KEYS (one auction, one hash tag {auction:<id>}): state, log, idem.
-- STATE is a hash: state ('open' | 'ended'), start, bands ("from:step,..."), window (ms),
-- max_ext, ext, started_at, ends_at, ended_at (ms, server time), price (0: no bid yet), leader,
-- leader_name, leader_max (the leader's hidden maximum), reserve (0: none), seq (bids logged),
-- rev (accepted bid calls), epoch (the book's name in PostgreSQL: auctions.book_epoch),
-- run_id, fence, fence_until, log_base (the seq before the first entry of LOG).
-- The book is `ok` only under the Redis run id it was opened or rebuilt under: a restart, a
-- restored snapshot or a failover may have taken it back in time, so it is `stale` and refuses
-- bids and the close until rebuilt from PostgreSQL (rebuild.py). While a rebuild runs it is
-- `fenced` ("<run id>:<token>" until fence_until); a fence past its lease or of an earlier run
-- is stale again, for another rebuild to take.
-- LOG is a list of accepted bids in server order: "seq|amount|proxy(0/1)|ts|bidder".
-- IDEM maps "<bidder length>:<bidder><key>" to the JSON answer of an accepted bid.
-- Numbers go through int() because Lua 5.1 prints large doubles in exponent form.
local STATE, LOG, IDEM = KEYS[1], KEYS[2], KEYS[3]
local MAX_CENTS, MAX_TEXT = 100000000, 200

local function int(n)
  return string.format('%d', n)
end

local function run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Digits only: no sign, hex, exponent, inf or nan gets through.
local function count_arg(s, min, max)
  if type(s) ~= 'string' or #s > 12 or not string.match(s, '^%d+$') then
    return nil
  end
  local n = tonumber(s)
  if n < min or n > max then
    return nil
  end
  return n
end

local function text_arg(s, min)
  return type(s) == 'string' and #s >= min and #s <= MAX_TEXT
end

local function load_state()
  local flat = redis.call('HGETALL', STATE)
  if #flat == 0 then
    return nil
  end
  local s = {}
  for i = 1, #flat, 2 do
    s[flat[i]] = flat[i + 1]
  end
  for _, field in ipairs({'start', 'window', 'max_ext', 'ext', 'started_at', 'ends_at',
                          'ended_at', 'price', 'leader_max', 'reserve', 'seq', 'rev',
                          'fence_until', 'log_base'}) do
    s[field] = tonumber(s[field] or '0')
  end
  return s
end

-- 'ok', 'fenced' (a rebuild is running) or 'stale' (to be rebuilt).
local function book_status(s, now)
  local run = run_id()
  if s.fence and s.fence ~= '' then
    local current = string.sub(s.fence, 1, #run + 1) == run .. ':'
    return (current and now < s.fence_until) and 'fenced' or 'stale'
  end
  return s.run_id == run and 'ok' or 'stale'
end

-- The step of the band the price is in: the last band that starts at or below it.
local function increment_at(bands, price)
  local step
  for from, band_step in string.gmatch(bands, '(%d+):(%d+)') do
    from, band_step = tonumber(from), tonumber(band_step)
    if step == nil or from <= price then
      step = band_step
    end
    if from > price then
      break
    end
  end
  return step
end

local function min_next(s)
  if s.price == 0 then
    return s.start
  end
  return s.price + increment_at(s.bands, s.price)
end

-- What every answer says of the auction (never the leader's maximum nor the reserve).
local function answer(s, code)
  return {
    code = code, state = s.state, price = s.price, leader = s.leader,
    leader_name = s.leader_name, ends_at = s.ends_at, extensions = s.ext, bids = s.seq,
    started_at = s.started_at, ended_at = s.ended_at, min_next = min_next(s),
    rev = s.rev, epoch = s.epoch, leader_max = s.leader_max,
  }
end
