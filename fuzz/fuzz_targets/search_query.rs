#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ketamine_fhir::fuzzing::search_query(data));
