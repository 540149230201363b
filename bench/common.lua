-- Shared part of the bench/*.lua wrk scripts (loaded with dofile). It counts
-- non-2xx responses per thread and prints one JSON result line from done().
-- Environment (set by bench/crud-load):
--   BENCH_PREFIX   FHIR base path, e.g. "/fhir"
--   BENCH_TOKEN    bearer token
--   BENCH_CLIENTS  number of connections (wrk does not expose it to Lua)
-- Each script sets the global `workload` and defines init() and request().

bench_dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
bench_prefix = os.getenv("BENCH_PREFIX") or "/fhir"

function bench_headers(extra)
  local h = { ["Accept"] = "application/fhir+json" }
  local token = os.getenv("BENCH_TOKEN") or ""
  if token ~= "" then
    h["Authorization"] = "Bearer " .. token
  end
  for k, v in pairs(extra or {}) do
    h[k] = v
  end
  return h
end

function bench_read_file(path)
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  local s = f:read("*a")
  f:close()
  return s
end

-- main state: remember the threads so done() can sum their counters
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

-- thread state
non2xx = 0

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

-- main state; wrk reports latency in microseconds
local function ms(us)
  return string.format("%.3f", us / 1000)
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("non2xx") or 0)
  end
  local e = summary.errors
  local socket_errors = e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"workload":"%s","clients":%d,"requests":%d,"errors":%d,"rps":%.1f,' ..
    '"p50_ms":%s,"p95_ms":%s,"p99_ms":%s,"max_ms":%s,"non_2xx":%d,"socket_errors":%d,"duration_s":%.1f}\n',
    workload, tonumber(os.getenv("BENCH_CLIENTS")) or -1, summary.requests, bad + socket_errors,
    secs > 0 and summary.requests / secs or 0,
    ms(latency:percentile(50)), ms(latency:percentile(95)), ms(latency:percentile(99)), ms(latency.max),
    bad, socket_errors, secs))
end
