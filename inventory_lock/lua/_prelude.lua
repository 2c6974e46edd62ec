-- Prepended to every script of this folder when it is loaded.
-- KEYS (one pool, one hash tag): meta, holds, buyers, due, confirming, idem, changes, waiters,
-- offers.
-- A hold record is "state|qty|expires_ms|updated_ms|buyer"; buyer comes last, so it may hold '|'.
-- Counted states: held, offered (a freed unit made a waiter's hold, see offer_freed), confirming,
-- confirmed; stock = remaining + held + offered + confirming + confirmed. Held and offered holds
-- expire by DUE.
-- A hold id is "<pool>.<seq>-<nonce>": the nonce is random per reserve call, so an id is never
-- handed out twice even when Redis forgets its last writes and seq goes back ("<pool>.<seq>"
-- ids of older releases are still read).
-- META's run_id is the Redis run id the pool was last brought up to date under: a restart, a
-- restore or a failover changes the run id and may have taken the pool back in time, so such a
-- pool is `stale` and reserve refuses it until it was repaired from the system of record. While
-- a repair runs the pool is `fenced` ("<run id>:<repair token>", until `fence_until`); a fence
-- past its lease or of an earlier run (its repair died, or Redis restarted under it) makes the
-- pool stale again, for another repair to take.
-- META's next_due is a lower bound of every expiry in DUE (reserve reclaims only once it is
-- reached): whatever adds to DUE lowers it; only a reclaim that emptied DUE of due holds raises it.
-- Numbers go through int() because Lua 5.1 prints large doubles in exponent form.
local META, HOLDS, BUYERS, DUE, CONFIRMING, IDEM = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local CHANGES, WAITERS, OFFERS = KEYS[7], KEYS[8], KEYS[9]
local MAX_TEXT, MAX_COUNT, MAX_HOLD_MS, MAX_BATCH = 200, 1000000000, 86400000, 10000

local function int(n)
  return string.format('%d', n)
end

local function server_time()
  local t = redis.call('TIME')
  return tonumber(t[1]), tonumber(t[2])
end

local function now_ms()
  local sec, usec = server_time()
  return sec * 1000 + math.floor(usec / 1000)
end

local function run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
end

-- Whether the pool sells: 'ok', 'fenced' (a repair is running) or 'stale' (to be repaired).
local function pool_state(meta_run_id, fenced, fence_until, now)
  local run = run_id()
  if fenced then -- a fence of an earlier run, or past its lease, is a repair that died
    local current = string.sub(fenced, 1, #run + 1) == run .. ':'
    return (current and now < tonumber(fence_until or '0')) and 'fenced' or 'stale'
  end
  return meta_run_id == run and 'ok' or 'stale'
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

local function text_arg(s)
  return type(s) == 'string' and #s >= 1 and #s <= MAX_TEXT
end

local function pool_arg(s)
  return type(s) == 'string' and #s <= 64 and string.match(s, '^[%w_%-]+$') ~= nil
end

local function hold_arg(s)
  if type(s) ~= 'string' then
    return false
  end
  local pool, seq = string.match(s, '^([%w_%-]+)%.(%d+)$')
  if not pool then
    local nonce
    pool, seq, nonce = string.match(s, '^([%w_%-]+)%.(%d+)%-([%da-f]+)$')
    if not pool or #nonce ~= 16 then
      return false
    end
  end
  return #pool <= 64 and #seq <= 18
end

local function decode(raw)
  local state, qty, exp, upd, buyer = string.match(raw, '^(%l+)|(%d+)|(%d+)|(%d+)|(.*)$')
  return {state = state, qty = tonumber(qty), exp = tonumber(exp), upd = tonumber(upd), buyer = buyer}
end

local function save(id, h, state, now)
  h.state, h.upd = state, now
  local raw = h.state .. '|' .. int(h.qty) .. '|' .. int(h.exp) .. '|' .. int(h.upd) .. '|' .. h.buyer
  redis.call('HSET', HOLDS, id, raw)
  return raw
end

-- Moves a hold between the counted states (held, confirming, confirmed); stock is unchanged.
local function shift(id, h, state, now)
  redis.call('HINCRBY', META, h.state, -h.qty)
  redis.call('HINCRBY', META, state, h.qty)
  return save(id, h, state, now)
end

-- A new pool with all of its stock remaining, marked with the server's run id.
local function create_pool(stock, limit, hold_ms)
  -- Leftovers of a pool whose meta key is gone belong to no pool.
  redis.call('DEL', HOLDS, BUYERS, DUE, CONFIRMING, IDEM, CHANGES, WAITERS, OFFERS)
  local sec, usec = server_time()
  local run = run_id()
  redis.call('HSET', META, 'stock', int(stock), 'remaining', int(stock), 'held', 0,
    'offered', 0, 'confirming', 0, 'confirmed', 0, 'limit', int(limit), 'hold_ms', int(hold_ms), 'closed', 0,
    'seq', int(sec * 1000000 + usec), 'run_id', run, 'changes_pending', 0)
end

-- Freed units go to the waitlist first: each one, in queue order, becomes an `offered` hold of
-- one unit for the next waiter still below the limit (a waiter at the limit is skipped), with
-- its own expiry in DUE and its id queued in OFFERS for the service to tell that buyer. Not in a
-- closed pool, and not the units that make up for stock promised beyond what there is
-- (`remaining` below zero after a repair). Returns the units left over for `remaining`; one
-- EXISTS when nobody waits.
-- An offer's id takes as its nonce the server's run id (a restart, a restored snapshot or a
-- failover changes it) and its time in microseconds (no other call of this pool runs in that
-- microsecond): an id given before Redis lost its data is not given again.
local MAX_OFFERS_QUEUED = MAX_BATCH

local function offer_freed(qty, now)
  if qty <= 0 or redis.call('EXISTS', WAITERS) == 0 then
    return qty
  end
  local m = redis.call('HMGET', META, 'closed', 'limit', 'hold_ms', 'seq', 'next_due',
    'remaining')
  local kept = math.max(0, -tonumber(m[6])) -- owed to remaining, which is below zero
  if m[1] == '1' or qty <= kept then
    return qty
  end
  local pool = string.match(META, '{sale:([%w_%-]+)}:meta$')
  local sec, usec = server_time()
  local micros = (sec * 1000000 + usec) % 4294967296
  local nonce = string.sub(run_id(), 1, 8) .. string.format('%08x', micros)
  local limit, exp, seq = tonumber(m[2]), now + tonumber(m[3]), tonumber(m[4])
  local offered = 0
  qty = qty - kept
  while qty > 0 do
    local first = redis.call('ZPOPMIN', WAITERS)
    if #first == 0 then
      break
    end
    local buyer = first[1]
    if tonumber(redis.call('HGET', BUYERS, buyer) or '0') < limit then
      seq = seq + 1
      local id = pool .. '.' .. int(seq) .. '-' .. nonce
      save(id, {qty = 1, exp = exp, buyer = buyer}, 'offered', now)
      redis.call('ZADD', DUE, int(exp), id)
      redis.call('HINCRBY', BUYERS, buyer, 1)
      redis.call('RPUSH', OFFERS, id)
      qty, offered = qty - 1, offered + 1
    end
  end
  if offered > 0 then
    redis.call('HINCRBY', META, 'offered', offered)
    redis.call('HSET', META, 'seq', int(seq))
    if exp < tonumber(m[5] or '0') then
      redis.call('HSET', META, 'next_due', int(exp))
    end
    redis.call('LTRIM', OFFERS, -MAX_OFFERS_QUEUED, -1)
  end
  return qty + kept
end

-- Ends a held, offered or confirming hold in `state`; its quantity goes to the waitlist first
-- (offer_freed), the rest back to stock.
local function release(id, h, state, now)
  redis.call('HINCRBY', META, h.state, -h.qty)
  if redis.call('HINCRBY', BUYERS, h.buyer, -h.qty) <= 0 then
    redis.call('HDEL', BUYERS, h.buyer)
  end
  redis.call('ZREM', DUE, id)
  redis.call('ZREM', CONFIRMING, id)
  local raw = save(id, h, state, now)
  local left = offer_freed(h.qty, now)
  if left > 0 then
    redis.call('HINCRBY', META, 'remaining', left)
  end
  return raw
end

-- Expires up to `batch` held or offered holds due at `now`; returns how many holds and how much
-- stock they freed (to waiters or to `remaining`), and how many ids it took from DUE (fewer
-- than `batch`: none due is left).
local function reclaim(now, batch)
  local ids = redis.call('ZRANGEBYSCORE', DUE, '-inf', int(now), 'LIMIT', 0, batch)
  local holds, qty = 0, 0
  for _, id in ipairs(ids) do
    local raw = redis.call('HGET', HOLDS, id)
    local h = raw and decode(raw)
    if h and (h.state == 'held' or h.state == 'offered') then
      release(id, h, 'expired', now)
      holds, qty = holds + 1, qty + h.qty
    else
      redis.call('ZREM', DUE, id)
    end
  end
  return holds, qty, #ids
end

-- The hold a transition script acts on and its record, or nil, nil and why it cannot.
local function find_hold(id)
  if not hold_arg(id) then
    return nil, nil, 'invalid'
  end
  local raw = redis.call('EXISTS', META) == 1 and redis.call('HGET', HOLDS, id)
  if not raw then
    return nil, nil, 'not_found'
  end
  return decode(raw), raw
end

-- Reply of a transition that cannot start from the hold's state.
local function refuse(h, raw)
  return {0, h.state == 'expired' and 'expired' or 'wrong_state', raw}
end
