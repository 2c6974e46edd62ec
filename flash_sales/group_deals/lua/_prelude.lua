-- Prepended to every script of this folder, after flash_sales/lua/_common.lua.
-- KEYS (one group sale, one hash tag {sale:<id>}): state, groups, buyers, due, filling.
-- STATE is a hash: state ('open' | 'closed'), stock, remaining, held (places of forming
-- groups), filling (places of full groups whose orders PostgreSQL is writing), sold, size,
-- window (ms), limit (per buyer), epoch (the pool's name in PostgreSQL:
-- group_deals.epoch), run_id, fence, fence_until.
-- The invariant: stock = remaining + held + filling + sold.
-- GROUPS maps a group id to its JSON {state, members, closes_at (ms, server time), starter}:
-- state 'forming' (in DUE by closes_at), 'filling' (in FILLING), 'formed' or 'failed'.
-- BUYERS maps a buyer to their places (held + filling + sold), at most `limit`.
-- The pool is `ok` only under the Redis run id it was opened or rebuilt under: a restart, a
-- restored snapshot or a failover may have taken it back in time, so it is `stale` and refuses
-- every change until rebuilt from PostgreSQL (rebuild.py); `fenced` while a rebuild runs.
local STATE, GROUPS, BUYERS, DUE, FILLING = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function load_state()
  return load_hash(STATE, {'stock', 'remaining', 'held', 'filling', 'sold', 'size', 'window',
                           'limit', 'fence_until'})
end

local function save_counts(s)
  redis.call('HSET', STATE, 'remaining', int(s.remaining), 'held', int(s.held),
    'filling', int(s.filling), 'sold', int(s.sold))
end

-- 'ok', 'fenced' (a rebuild is running) or 'stale' (to be rebuilt).
local function pool_status(s, now)
  local run = run_id()
  if s.fence and s.fence ~= '' then
    local current = string.sub(s.fence, 1, #run + 1) == run .. ':'
    return (current and now < s.fence_until) and 'fenced' or 'stale'
  end
  return s.run_id == run and 'ok' or 'stale'
end

local function get_group(gid)
  local raw = redis.call('HGET', GROUPS, gid)
  if not raw then
    return nil
  end
  local g = cjson.decode(raw)
  if type(g.members) ~= 'table' then
    g.members = {}
  end
  return g
end

local function put_group(gid, g)
  local members = g.members
  if #members == 0 then
    g.members = nil -- cjson writes an empty table as {}: absent means none
  end
  redis.call('HSET', GROUPS, gid, cjson.encode(g))
  g.members = members
end

local function member_at(g, buyer)
  for i, m in ipairs(g.members) do
    if m == buyer then
      return i
    end
  end
  return nil
end

local function buyer_add(buyer, n)
  local left = redis.call('HINCRBY', BUYERS, buyer, n)
  if left <= 0 then
    redis.call('HDEL', BUYERS, buyer)
  end
end

-- A forming group fails: every member's hold goes back to the stock.
local function fail_forming(s, gid, g)
  for _, m in ipairs(g.members) do
    buyer_add(m, -1)
  end
  s.remaining = s.remaining + #g.members
  s.held = s.held - #g.members
  g.state = 'failed'
  put_group(gid, g)
  redis.call('ZREM', DUE, gid)
end

local function answer(s, code, gid, g)
  local reply = {code = code, epoch = s and s.epoch or '', remaining = s and s.remaining or 0,
                 size = s and s.size or 0}
  if g then
    reply.group, reply.state, reply.closes_at = gid, g.state, g.closes_at
    reply.starter = g.starter
    if #g.members > 0 then
      reply.members = g.members
    end
  end
  return cjson.encode(reply)
end

-- The opening of a call on one group by one buyer (join, leave): the state of an `ok` pool and
-- the server's time, or the reply that refuses the call (`invalid` arguments, `missing` when
-- there is no pool, the pool's status).
local function open_group_call(gid, buyer, missing)
  if not (count_arg(gid, 1, 999999999999999) and text_arg(buyer, 1)) then
    return nil, nil, cjson.encode({code = 'invalid'})
  end
  local s = load_state()
  if not s then
    return nil, nil, cjson.encode({code = missing})
  end
  local now = now_ms()
  local status = pool_status(s, now)
  if status ~= 'ok' then
    return nil, nil, cjson.encode({code = status})
  end
  return s, now, nil
end
