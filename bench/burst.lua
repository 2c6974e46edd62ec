-- wrk script of bench/burst.py: request i is line i of the file named by the first argument
-- (wrapping around past the end), each line `METHOD<TAB>PATH<TAB>TOKEN<TAB>BODY` ("-" for no
-- token or body), with an Idempotency-Key of its own (the second argument, then i).
-- Prints one line the bench reads: requests, duration (us), p50 and p99 (us), non-2xx/3xx
-- answers and socket errors.
local lines, n, i, run = {}, 0, 0, "k"

function init(args)
  run = args[2] or "k"
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^(%S+)\t(%S+)\t(%S+)\t(.*)$")
    local headers = {["Content-Type"] = "application/json"}
    if token ~= "-" then
      headers["Authorization"] = "Bearer " .. token
    end
    if body == "-" then
      body = nil
    end
    n = n + 1
    lines[n] = {method, path, headers, body}
  end
end

function request()
  local line = lines[(i % n) + 1]
  i = i + 1
  local headers = line[3]
  headers["Idempotency-Key"] = run .. "-" .. i
  return wrk.format(line[1], line[2], headers, line[4])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BURST %d %d %d %d %d %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout
  ))
end
