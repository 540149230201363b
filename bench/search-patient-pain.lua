-- wrk script: a patient's pain scores, newest first, for a random synthetic patient:
--   GET /fhir/Observation?patient=syn-NNNNNNN&code=http://loinc.org|72514-3&_sort=-date&_count=50
-- BENCH_PATIENTS is the number of synthetic patients loaded (ids syn-0000001 ...).
-- See bench/common.lua for the rest of the environment.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
workload = "search_patient_pain_sorted"

local patients = tonumber(os.getenv("BENCH_PATIENTS") or "")
local headers

function init(args)
  assert(patients and patients > 0, "BENCH_PATIENTS is not set")
  headers = bench_headers()
  math.randomseed(1234 + (tid or 1))
end

function request()
  local path = string.format(
    "%s/Observation?patient=syn-%07d&code=http://loinc.org%%7C72514-3&_sort=-date&_count=50",
    bench_prefix, math.random(1, patients))
  return wrk.format("GET", path, headers)
end
