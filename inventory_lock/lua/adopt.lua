-- Makes orders of the system of record confirmed holds, whatever Redis remembers of them: a
-- repair after Redis lost or rolled back writes, or a confirm whose hold Redis forgot.
-- ARGV: pool, then (hold id, buyer, qty) per order, each id of this pool and given once. Per
-- order, by the hold's state here:
--   confirmed with that buyer and qty: nothing; held, offered or confirming: -> confirmed;
--   missing, released or expired: recorded confirmed, its qty taken from remaining (which goes
--   below zero when Redis promised more than there is: those holds fail at confirm);
--   recorded with another buyer or qty: that record is uncounted first (a `mismatch`).
-- A buyer may end above the limit (loaded as is: the order exists). Idempotent.
-- Reply: {adopted, qty adopted, mismatches, remaining}, or {'rejected', reason}.
if redis.call('EXISTS', META) == 0 then
  return {'rejected', 'unknown_pool'}
end
local pool = ARGV[1]
if not pool_arg(pool) or #ARGV % 3 ~= 1 then
  return {'rejected', 'invalid'}
end
local seen = {}
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  if not (hold_arg(id) and string.sub(id, 1, #pool + 1) == pool .. '.' and not seen[id]
      and text_arg(ARGV[i + 1]) and count_arg(ARGV[i + 2], 1, MAX_COUNT)) then
    return {'rejected', 'invalid'}
  end
  seen[id] = true
end
local now = now_ms()
local adopted, qty_adopted, mismatches = 0, 0, 0

local function uncount(h)
  redis.call('HINCRBY', META, h.state, -h.qty)
  redis.call('HINCRBY', META, 'remaining', h.qty)
  if redis.call('HINCRBY', BUYERS, h.buyer, -h.qty) <= 0 then
    redis.call('HDEL', BUYERS, h.buyer)
  end
end

for i = 2, #ARGV, 3 do
  local id, buyer, qty = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local raw = redis.call('HGET', HOLDS, id)
  local h = raw and decode(raw)
  if h and (h.buyer ~= buyer or h.qty ~= qty) then
    mismatches = mismatches + 1
    if h.state == 'held' or h.state == 'offered' or h.state == 'confirming'
        or h.state == 'confirmed' then
      uncount(h)
    end
    h = nil
  end
  if not (h and h.state == 'confirmed') then
    redis.call('ZREM', DUE, id)
    redis.call('ZREM', CONFIRMING, id)
    if h and (h.state == 'held' or h.state == 'offered' or h.state == 'confirming') then
      shift(id, h, 'confirmed', now)
    else
      redis.call('HINCRBY', META, 'confirmed', qty)
      redis.call('HINCRBY', META, 'remaining', -qty)
      redis.call('HINCRBY', BUYERS, buyer, qty)
      save(id, {qty = qty, exp = now, buyer = buyer}, 'confirmed', now)
    end
    adopted, qty_adopted = adopted + 1, qty_adopted + qty
  end
end
return {adopted, qty_adopted, mismatches, redis.call('HGET', META, 'remaining')}
