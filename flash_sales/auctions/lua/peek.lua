-- The auction as the scripts see it now ('unknown' when it is not here), and `book`: whether
-- it takes bids ('ok') or waits for a rebuild ('stale', 'fenced').
local s = load_state()
if not s then
  return cjson.encode({code = 'unknown'})
end
local reply = answer(s, s.state)
reply.book = book_status(s, now_ms())
return cjson.encode(reply)
