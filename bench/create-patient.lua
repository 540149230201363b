-- wrk script: POST a small realistic Patient (bench/patient.json) with a
-- unique MRN per request. See bench/common.lua for the environment.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
workload = "create_patient"

local path, headers, head, tail, tag
local n = 0

function init(args)
  path = bench_prefix .. "/Patient"
  headers = bench_headers({ ["Content-Type"] = "application/fhir+json" })
  local template = bench_read_file(bench_dir .. "patient.json"):gsub("%s+$", "")
  head, tail = template:match("^(.*)__MRN__(.*)$")
  assert(head, "patient.json lacks the __MRN__ placeholder")
  tag = string.format("wrk-%d-%d-", os.time(), tid or 0)
end

function request()
  n = n + 1
  return wrk.format("POST", path, headers, head .. tag .. n .. tail)
end
