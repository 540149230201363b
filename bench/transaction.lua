-- wrk script: POST /fhir a transaction Bundle of one Patient (bench/patient.json,
-- unique MRN per request) and one heart-rate Observation whose subject is the
-- Patient's urn:uuid fullUrl. See bench/common.lua for the environment.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
workload = "transaction_patient_observation"

local path, headers, head, tail, tag
local n = 0

local observation = [[{"resourceType":"Observation","status":"final",]]
  .. [["category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],]]
  .. [["code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},]]
  .. [["subject":{"reference":"urn:uuid:__URN__"},"effectiveDateTime":"2026-11-20T10:00:00Z",]]
  .. [["valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}]]

function init(args)
  path = bench_prefix
  headers = bench_headers({ ["Content-Type"] = "application/fhir+json", ["Prefer"] = "return=minimal" })
  local patient = bench_read_file(bench_dir .. "patient.json"):gsub("%s+$", "")
  local bundle = [[{"resourceType":"Bundle","type":"transaction","entry":[]]
    .. [[{"fullUrl":"urn:uuid:__URN__","resource":]] .. patient
    .. [[,"request":{"method":"POST","url":"Patient"}},]]
    .. [[{"fullUrl":"urn:uuid:__URN__-obs","resource":]] .. observation
    .. [[,"request":{"method":"POST","url":"Observation"}}]}]]
  head, tail = bundle:match("^(.*)__MRN__(.*)$")
  assert(head, "patient.json lacks the __MRN__ placeholder")
  tag = string.format("wrk-%d-%d-", os.time(), tid or 0)
end

function request()
  n = n + 1
  local unique = tag .. n
  -- urn:uuid values need the UUID shape; the counter fills the last group.
  local urn = string.format("00000000-0000-4000-8%03d-%012d", (tid or 0) % 1000, n)
  local body = (head .. unique .. tail):gsub("__URN__", urn)
  return wrk.format("POST", path, headers, body)
end
