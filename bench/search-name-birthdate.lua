-- wrk script: GET /fhir/Patient?name=smi&birthdate=ge1970 (a name prefix and a date range).
-- See bench/common.lua for the environment.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")
workload = "search_name_birthdate"

local request_text

function init(args)
  request_text = wrk.format("GET", bench_prefix .. "/Patient?name=smi&birthdate=ge1970", bench_headers())
end

function request()
  return request_text
end
