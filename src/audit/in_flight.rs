//! The request being served, as the write path sees it: lets a transaction that commits a
//! write record that request's AuditEvent on its own connection, so the write and its
//! audit commit together or not at all, and the middleware then records nothing more.

use std::cell::{Cell, RefCell};
use std::future::Future;

use actix_web::HttpRequest;
use actix_web::http::Method;

use super::event::AuditRecord;
use super::middleware::audit_record;

tokio::task_local! {
    // Request-scoped: the storage layer learns who is writing without every write
    // function taking the HTTP request.
    static IN_FLIGHT: InFlight;
}

#[derive(Default)]
struct InFlight {
    /// The request's AuditEvent as known once its principal is: noted by the handler's
    /// `Principal` extractor (after routing, so the route is known).
    noted: RefCell<Option<Noted>>,
    /// Set once a transaction holding this request's AuditEvent has committed.
    recorded: Cell<bool>,
}

struct Noted {
    record: AuditRecord,
    method: Method,
    pattern: String,
}

/// Runs `serve` as the request in flight; also says whether a committed transaction
/// recorded the request's AuditEvent.
pub async fn serve<F: Future>(serve: F) -> (F::Output, bool) {
    IN_FLIGHT
        .scope(InFlight::default(), async {
            let output = serve.await;
            (output, IN_FLIGHT.with(|f| f.recorded.get()))
        })
        .await
}

/// Notes `request` (routed, its principal verified) as the request in flight.
pub fn note(request: &HttpRequest) {
    let _ = IN_FLIGHT.try_with(|in_flight| {
        *in_flight.noted.borrow_mut() = Some(Noted {
            record: audit_record(request, 0),
            method: request.method().clone(),
            pattern: request.match_pattern().unwrap_or_default(),
        });
    });
}

/// What a transaction wrote, for its AuditEvent.
#[derive(Debug, Clone, Default)]
pub struct WrittenSet {
    /// `Type/id` of each resource written.
    pub targets: Vec<String>,
    pub patients: Vec<String>,
    /// Whether one of the writes created its resource (a PUT that creates answers 201).
    pub created: bool,
}

impl WrittenSet {
    pub fn add(&mut self, target: String, patients: Vec<String>, created: bool) {
        push_new(&mut self.targets, [target]);
        push_new(&mut self.patients, patients);
        self.created |= created;
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// Appends each of `items` not yet in `list`, keeping the order of first appearance.
fn push_new(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The AuditEvent of the request in flight for a transaction about to commit `written`;
/// `None` outside a request (seeding, webhook bookkeeping) or when nothing was written.
pub fn record_for_commit(written: &WrittenSet) -> Option<AuditRecord> {
    if written.is_empty() {
        return None;
    }
    IN_FLIGHT
        .try_with(|in_flight| {
            let noted = in_flight.noted.borrow();
            let noted = noted.as_ref()?;
            let mut record = noted.record.clone();
            record.status = success_status(&noted.method, &noted.pattern, written.created);
            record.targets = written.targets.clone();
            push_new(&mut record.patients, written.patients.iter().cloned());
            Some(record)
        })
        .ok()
        .flatten()
}

/// Marks the request in flight as audited: its transaction has committed the event.
pub fn mark_recorded() {
    let _ = IN_FLIGHT.try_with(|in_flight| in_flight.recorded.set(true));
}

/// The status a request answers once its writes commit: a create (POST to a type, or a PUT
/// that created) 201, a delete 204, the rest (updates, patches, Bundles, operations) 200.
fn success_status(method: &Method, pattern: &str, created: bool) -> u16 {
    match *method {
        Method::POST if pattern == "/fhir/{type}" => 201,
        Method::PUT if created => 201,
        Method::DELETE => 204,
        _ => 200,
    }
}
