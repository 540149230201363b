-- wrk script: GET Patient/{id}, cycling through the ids in BENCH_IDS_FILE
-- (one per line; each thread starts at a different offset). See
-- bench/common.lua for the rest of the environment.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
workload = "read_patient"

local requests = {}
local i = 0

function init(args)
  local path = assert(os.getenv("BENCH_IDS_FILE"), "BENCH_IDS_FILE is not set")
  local headers = bench_headers()
  for id in bench_read_file(path):gmatch("[^\r\n]+") do
    requests[#requests + 1] = wrk.format("GET", bench_prefix .. "/Patient/" .. id, headers)
  end
  assert(#requests > 0, "no ids in " .. path)
  i = ((tid or 1) * 37) % #requests
end

function request()
  i = i % #requests + 1
  return requests[i]
end
