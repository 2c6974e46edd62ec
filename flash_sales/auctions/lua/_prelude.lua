-- Prepended to every script of this folder, after flash_sales/lua/_common.lua.
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
local STATE, LOG, IDEM = KEYS[1], KEYS[2], KEYS[3]
local MAX_CENTS = 100000000

local function load_state()
  return load_hash(STATE, {'start', 'window', 'max_ext', 'ext', 'started_at', 'ends_at',
                           'ended_at', 'price', 'leader_max', 'reserve', 'seq', 'rev',
                           'fence_until', 'log_base'})
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
