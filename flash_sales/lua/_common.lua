-- Prepended (before the package's own prelude) to every script of flash_sales' sale kinds
-- (auctions, group deals): the number and text checks of arguments, the server's clock and the
-- Redis run id every kind's pool is marked with.
-- Numbers go through int() because Lua 5.1 prints large doubles in exponent form.
local MAX_TEXT = 200

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

-- Digits only (at most 15, exact in a double): no sign, hex, exponent, inf or nan gets through.
local function count_arg(s, min, max)
  if type(s) ~= 'string' or #s > 15 or not string.match(s, '^%d+$') then
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

-- A hash as a table, the named fields as numbers (0 when absent); nil when the key is absent.
local function load_hash(key, numbers)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return nil
  end
  local s = {}
  for i = 1, #flat, 2 do
    s[flat[i]] = flat[i + 1]
  end
  for _, field in ipairs(numbers) do
    s[field] = tonumber(s[field] or '0')
  end
  return s
end
