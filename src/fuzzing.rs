//! Entry points for the fuzz targets in fuzz/: the real parse and validate code on raw bytes, without IO.
//!
//! Each function accepts any input and must return without panicking; what it returns
//! is irrelevant to the fuzzer, which only looks for crashes.

use crate::fhir::search::{self, PageLimits, SearchContext};
use crate::fhir::strict_json::{self, Limits};
use crate::fhir::validation::{self, ValidationOptions};
use crate::fhir::{bundle_request, resource};

const BASE_URL: &str = "http://localhost/fhir";
/// The limits the server applies to request bodies by default.
const LIMITS: Limits = Limits {
    max_depth: 64,
    max_values: 200_000,
};

/// Parses `bytes` as a request body and validates it as the resource type it names, strictly
/// and leniently.
pub fn validate_resource(bytes: &[u8]) {
    let Ok(value) = strict_json::from_slice(bytes, LIMITS) else {
        return;
    };
    let resource_type = resource::resource_type_of(&value)
        .unwrap_or("Patient")
        .to_string();
    for lenient in [false, true] {
        let report =
            validation::validate_resource(&resource_type, &value, ValidationOptions { lenient });
        let _ = report.has_errors();
    }
}

/// Splits `type_and_query` at the first `?` into a resource type and a query string, and
/// parses the query as a search on that type.
pub fn search_query(type_and_query: &[u8]) {
    let text = String::from_utf8_lossy(type_and_query);
    let (resource_type, query) = text.split_once('?').unwrap_or(("Patient", &text));
    let Ok(parameters) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    for strict in [true, false] {
        let context = SearchContext {
            limits: PageLimits {
                default: 20,
                max: 100,
            },
            strict,
            base_url: BASE_URL.into(),
            zone: chrono_tz::UTC,
        };
        let _ = search::parse(resource_type, &parameters, &context);
    }
}

/// Parses `bytes` as a batch or transaction Bundle, as POST /fhir does.
pub fn bundle_request(bytes: &[u8]) {
    let Ok(value) = strict_json::from_slice(bytes, LIMITS) else {
        return;
    };
    if let Ok(request) = bundle_request::parse(&value, BASE_URL, 1000) {
        let _ = bundle_request::processing_order(request.entries.iter().flatten());
    }
}
