//! The audit trail: what each interaction or refusal was (`Interaction`), the AuditEvent
//! recorded for it (`event`), the middleware that records it before the response
//! leaves (`middleware`) and the group-commit writers it hands events to (`writer`). The
//! SQL is in `store::audit`.

pub mod event;
pub mod in_flight;
pub mod middleware;
pub mod writer;

use actix_web::http::Method;

/// The AuditEvent.action of an interaction: Create, Read, Update, Delete or Execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }

    /// A change to stored data: its answer is released even if its audit fails, since
    /// the change is committed (a 503 would invite a duplicate retry).
    pub fn is_write(self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Delete)
    }
}

/// What a request was: the interaction code (http://hl7.org/fhir/restful-interaction, or
/// `login` at the token endpoint) and its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interaction {
    pub code: &'static str,
    pub action: Action,
}

const fn interaction(code: &'static str, action: Action) -> Interaction {
    Interaction { code, action }
}

/// The interaction of a request from its method and matched route pattern (`None` when
/// no route matched: the raw path).
pub fn classify(method: &Method, pattern: &str) -> Interaction {
    use Action::*;
    if pattern == "/auth/token" {
        return interaction("login", Execute);
    }
    if pattern.contains('$') {
        return interaction("operation", Execute);
    }
    if pattern.ends_with("/_history/{version}") {
        return interaction("vread", Read);
    }
    if pattern == "/fhir/_history" {
        return interaction("history-system", Read);
    }
    if pattern.ends_with("/{id}/_history") {
        return interaction("history-instance", Read);
    }
    if pattern.ends_with("/_history") {
        return interaction("history-type", Read);
    }
    if pattern.ends_with("/_search") {
        return interaction("search-type", Read);
    }
    if pattern == "/fhir" || pattern == "/fhir/" {
        return interaction("batch", Execute);
    }
    let instance = pattern.ends_with("/{id}");
    match *method {
        Method::GET if instance => interaction("read", Read),
        Method::GET => interaction("search-type", Read),
        Method::POST => interaction("create", Create),
        Method::PUT => interaction("update", Update),
        Method::PATCH => interaction("patch", Update),
        Method::DELETE => interaction("delete", Delete),
        _ => interaction("operation", Execute),
    }
}

/// Paths never audited: probes, the API description and the CapabilityStatement.
pub fn is_unaudited(path: &str) -> bool {
    crate::security::is_operational(path)
        || matches!(path, "/openapi.json" | "/fhir/metadata")
        || path.starts_with("/docs")
        || path.starts_with("/.well-known/")
        || path.starts_with("/fhir/.well-known/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_restful_interaction() {
        let cases = [
            (Method::GET, "/fhir/{type}/{id}", "read", "R"),
            (
                Method::GET,
                "/fhir/{type}/{id}/_history/{version}",
                "vread",
                "R",
            ),
            (Method::GET, "/fhir/{type}", "search-type", "R"),
            (Method::POST, "/fhir/{type}/_search", "search-type", "R"),
            (Method::POST, "/fhir/{type}", "create", "C"),
            (Method::PUT, "/fhir/{type}/{id}", "update", "U"),
            (Method::PATCH, "/fhir/{type}/{id}", "patch", "U"),
            (Method::DELETE, "/fhir/{type}/{id}", "delete", "D"),
            (Method::GET, "/fhir/_history", "history-system", "R"),
            (Method::GET, "/fhir/{type}/_history", "history-type", "R"),
            (
                Method::GET,
                "/fhir/{type}/{id}/_history",
                "history-instance",
                "R",
            ),
            (
                Method::GET,
                "/fhir/Patient/{id}/$everything",
                "operation",
                "E",
            ),
            (Method::POST, "/auth/token", "login", "E"),
        ];
        for (method, pattern, code, action) in cases {
            let found = classify(&method, pattern);
            assert_eq!(
                (found.code, found.action.code()),
                (code, action),
                "{pattern}"
            );
        }
    }
}

/// Who a request spoke for when it carried no access token, as the token endpoint learns
/// it (the authenticated client id); the handler leaves it in the request's extensions.
#[derive(Debug, Clone)]
pub struct AuditAgent(pub String);
