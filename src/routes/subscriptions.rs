//! Subscription operations of the Subscriptions R5 Backport IG: `Subscription/{id}/$status`
//! and `Subscription/{id}/$events` (past events by number, so a partner can fill gaps).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::crud::{instance, read_live};
use crate::auth::{Interaction, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fhir::FHIR_JSON;
use crate::store;
use crate::subscriptions::notification::{
    NotificationType, NotifiedEvent, StatusHead, bundle, status_parameters,
};
use crate::subscriptions::subscription::{PayloadContent, SubscriptionView};

/// Events returned by one `$events` call at most.
const MAX_EVENTS: i64 = 100;

/// The live Subscription, its view and delivery state, if the caller may read it.
async fn readable_subscription(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> ApiResult<(SubscriptionView, store::subscriptions::DeliveryState)> {
    let (resource_type, id) = instance("Subscription", id)?;
    principal.authorize(Some("Subscription"), Interaction::Read)?;
    let content = read_live(state, &resource_type, &id).await?;
    let view = SubscriptionView::read(&content).map_err(ApiError::Unprocessable)?;
    let delivery = store::subscriptions::delivery_state(&state.pool, id.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Subscription/{id} has no delivery state")))?;
    Ok((view, delivery))
}

fn head<'a>(
    state: &'a AppState,
    id: &'a str,
    view: &'a SubscriptionView,
    delivery: &'a store::subscriptions::DeliveryState,
    kind: NotificationType,
) -> StatusHead<'a> {
    StatusHead {
        base_url: &state.base_url,
        subscription_id: id,
        topic: view.criteria.topic_url(),
        status: &delivery.status,
        kind,
        events_since_start: delivery.events_since_start,
        error: delivery.last_error.as_deref(),
    }
}

#[utoipa::path(
    get, path = "/fhir/Subscription/{id}/$status", tag = "Subscriptions",
    summary = "The subscription's status: events since it started, and the last error if any",
    params(("id" = String, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "Bundle (searchset) holding the subscription-status Parameters", body = crate::openapi::AnyResource, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn status(
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let (view, delivery) = readable_subscription(&state, &principal, &id).await?;
    let status_id = Uuid::new_v4().to_string();
    let head = head(&state, &id, &view, &delivery, NotificationType::QueryStatus);
    let parameters = status_parameters(&head, &[], PayloadContent::Empty, &status_id);
    let body = json!({
        "resourceType": "Bundle",
        "id": Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": 1,
        "entry": [{"fullUrl": format!("urn:uuid:{status_id}"), "resource": parameters, "search": {"mode": "match"}}]
    });
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(body))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    events_since_number: Option<String>,
    events_until_number: Option<String>,
    content: Option<String>,
}

#[utoipa::path(
    get, path = "/fhir/Subscription/{id}/$events", tag = "Subscriptions",
    summary = "Past events of the subscription by number (at most 100 per call), as a notification Bundle of type query-event",
    params(
        ("id" = String, Path, description = "Subscription id"),
        ("eventsSinceNumber" = Option<String>, Query, description = "First event number to return (default 1)"),
        ("eventsUntilNumber" = Option<String>, Query, description = "Last event number to return (default: the latest)"),
        ("content" = Option<String>, Query, description = "empty, id-only or full-resource (default: the subscription's own)")
    ),
    responses(
        (status = 200, description = "Bundle (history) of the events, subscription-status first", body = crate::openapi::AnyResource, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn events(
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let id = path.into_inner();
    let (view, delivery) = readable_subscription(&state, &principal, &id).await?;
    let since =
        number_parameter("eventsSinceNumber", query.events_since_number.as_deref())?.unwrap_or(1);
    let until = number_parameter("eventsUntilNumber", query.events_until_number.as_deref())?
        .unwrap_or(delivery.events_since_start);
    let content = match query.content.as_deref() {
        None => view.content,
        Some(code) => PayloadContent::parse(code).ok_or_else(|| {
            ApiError::bad_parameter(
                "content",
                format!("content {code:?} is not empty, id-only or full-resource"),
            )
        })?,
    };
    if content == PayloadContent::FullResource {
        // The resources themselves: only for callers who may read them directly.
        principal.authorize(Some(view.criteria.resource_type()), Interaction::Read)?;
    }
    let stored =
        store::subscriptions::events(&state.pool, &id, since.max(1) - 1, until, MAX_EVENTS).await?;
    let events: Vec<NotifiedEvent> = stored
        .into_iter()
        .map(|e| NotifiedEvent {
            number: e.event_number,
            timestamp: e.occurred_at,
            focus_type: e.focus_type,
            focus_id: e.focus_id,
            method: e.method,
            resource: e
                .content
                .filter(|_| content == PayloadContent::FullResource),
        })
        .collect();
    let head = head(&state, &id, &view, &delivery, NotificationType::QueryEvent);
    let body: Value = bundle(&head, &events, content);
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(body))
}

fn number_parameter(name: &str, value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|text| {
            text.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                ApiError::bad_parameter(
                    name,
                    format!("{name} must be a positive event number, not {text:?}"),
                )
            })
        })
        .transpose()
}
