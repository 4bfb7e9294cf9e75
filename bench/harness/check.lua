-- wrk script: POST a pool of bodies round-robin and count the answers that are right.
-- Arguments (after `--`): body directory, check mode (status | number | prefix), HTTP status.
-- The directory holds body-<i>, and expected (one number per line) or prefix-<i> files, and
-- headers (name and value on alternate lines; Content-Type: application/json without it).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  local dir = args[1]
  mode = args[2]
  want_status = tonumber(args[3])
  requests, expected, prefixes = {}, {}, {}
  local headers = {}
  local names = slurp(dir .. "/headers")
  if names then
    local lines = {}
    for line in names:gmatch("[^\n]+") do lines[#lines + 1] = line end
    for j = 1, #lines - 1, 2 do headers[lines[j]] = lines[j + 1] end
  else
    headers["Content-Type"] = "application/json"
  end
  local i = 0
  while true do
    local body = slurp(dir .. "/body-" .. i)
    if not body then break end
    requests[#requests + 1] = wrk.format("POST", nil, headers, body)
    prefixes[#prefixes + 1] = slurp(dir .. "/prefix-" .. i)
    i = i + 1
  end
  local numbers = slurp(dir .. "/expected") or ""
  for line in numbers:gmatch("[^\n]+") do expected[#expected + 1] = tonumber(line) end
  n, ok, bad, wrong_status = 0, 0, 0, 0
  statuses = {}
end

function request()
  n = n + 1
  return requests[(n % #requests) + 1]
end

local function number_ok(body)
  if not body:find('"status":"ok"', 1, true) then return false end
  local v = tonumber(body:match('"result":%s*([-+%d%.eE]+)'))
  if not v then return false end
  for _, e in ipairs(expected) do
    if math.abs(v - e) <= 1e-9 * math.max(1, math.abs(e)) then return true end
  end
  return false
end

local function prefix_ok(body)
  for _, p in ipairs(prefixes) do
    if p and body:find(p, 1, true) then return true end
  end
  return false
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= want_status then
    wrong_status = wrong_status + 1
  elseif mode == "status" or (mode == "number" and number_ok(body))
      or (mode == "prefix" and prefix_ok(body)) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, reqs)
  local good, wrong, other, by_status = 0, 0, 0, {}
  for _, t in ipairs(threads) do
    good = good + t:get("ok")
    wrong = wrong + t:get("bad")
    other = other + t:get("wrong_status")
    for status, count in pairs(t:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(by_status) do
    parts[#parts + 1] = string.format('"%d":%d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"ok":%d,"bad":%d,"wrong_status":%d,' ..
    '"statuses":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, good, wrong, other, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
