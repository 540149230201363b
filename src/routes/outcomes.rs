//! `Patient/{id}/$outcomes` and the clinic-level `$outcomes`.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::AppState;
use super::operations::{date_parameter, parameters_response, patient_record, readable_patient};
use super::search::parse_form;
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::clinic::outcomes::{patient_outcomes as outcomes_of, to_parameters};
use crate::error::{ApiError, ApiResult};
use crate::fhir::resource::instant;
use crate::store::outcomes::{self, ClinicOutcomes};

#[utoipa::path(
    get, path = "/fhir/Patient/{id}/$outcomes", tag = "Clinic outcomes",
    summary = "A patient's outcome measures",
    description = "Pain (NRS) from the score at or before the first infusion of the current series \
                   to the latest, with the IMMPACT category (minimal < 30% <= moderate < 50% <= substantial); \
                   PEG and PHQ-9 likewise (PHQ-9 response: >= 50% reduction, remission: latest < 5); \
                   infusions given, series, cumulative dose and days since the last infusion. \
                   Values that are not known are left out.",
    params(("id" = String, Path, description = "Patient id, e.g. demo-patient-01")),
    responses(
        (status = 200, description = "A Parameters resource: pain-baseline, pain-baseline-date, pain-latest, pain-latest-date, pain-absolute-change, pain-percent-change, pain-response, the same for peg- and phq9-, phq9-response, phq9-remission, infusions-given, series-count, cumulative-dose (mg), days-since-last-infusion", body = crate::openapi::Parameters, content_type = "application/fhir+json"),
        (status = 403, description = "The token's scopes do not allow reading Patient, or it is limited to another patient", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "No such patient", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json"),
        (status = 410, description = "The patient has been deleted", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn patient_outcomes(
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    readable_patient(&state, &principal, &path).await?;
    let record = patient_record(&state, &path).await?;
    let outcomes = outcomes_of(&record, state.clinic(), Utc::now());
    Ok(parameters_response(&to_parameters(&outcomes, &path)))
}

/// The range `[from, to)` of infusion starts: `start` from the beginning of its date,
/// `end` to the end of its date (so `end=2026-06-30` includes that day); all time by default.
fn date_range(
    parameters: &[(String, String)],
    zone: chrono_tz::Tz,
) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let from = match date_parameter(parameters, "start", zone)? {
        Some((start, _)) => start,
        None => Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
    };
    let to = match date_parameter(parameters, "end", zone)? {
        Some((_, finish)) => finish,
        None => Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
    };
    if to <= from {
        return Err(ApiError::bad_parameter(
            "end",
            "The parameter 'end' must not be before 'start'",
        ));
    }
    Ok((from, to))
}

/// Percentages to one decimal.
fn percent(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// The clinic's figures as a Parameters resource; rates and the mean are left out when no
/// patient is evaluable.
pub fn clinic_parameters(
    outcomes: &ClinicOutcomes,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Value {
    let mut parameters = Vec::new();
    if let Some(from) = from {
        parameters.push(json!({"name": "start", "valueDateTime": instant(from)}));
    }
    if let Some(to) = to {
        parameters.push(json!({"name": "end", "valueDateTime": instant(to)}));
    }
    let counts = [
        ("patients-treated", outcomes.patients_treated),
        ("patients-with-follow-up", outcomes.patients_with_follow_up),
        ("patients-evaluable", outcomes.patients_evaluable),
        ("responders-30", outcomes.responders_30),
        ("responders-50", outcomes.responders_50),
    ];
    for (name, count) in counts {
        parameters.push(json!({"name": name, "valueInteger": count}));
    }
    let rates = [
        ("responder-rate-30", outcomes.rate(outcomes.responders_30)),
        ("responder-rate-50", outcomes.rate(outcomes.responders_50)),
        ("mean-percent-change", outcomes.mean_percent_change),
    ];
    for (name, value) in rates {
        if let Some(value) = value {
            parameters.push(json!({"name": name, "valueDecimal": percent(value)}));
        }
    }
    json!({"resourceType": "Parameters", "parameter": parameters})
}

#[utoipa::path(
    get, path = "/fhir/$outcomes", tag = "Clinic outcomes",
    summary = "Clinic-level pain outcomes of the patients treated in a period",
    description = "Over every patient with a ketamine infusion (RxNorm 6130, in progress or completed) \
                   started in [start, end): baseline is the last pain score (LOINC 72514-3) at or before \
                   the patient's first infusion in the period, follow-up the latest one after it. \
                   Rates and the mean are over the patients with both and a baseline above 0 \
                   (patients-evaluable). Needs a system- or user-level read scope on all types.",
    params(
        ("start" = Option<String>, Query, description = "Infusions starting on or after this date, e.g. 2026-01-01 (default: all time)"),
        ("end" = Option<String>, Query, description = "Infusions starting on or before this date, e.g. 2026-06-30, that day included (default: all time)")
    ),
    responses(
        (status = 200, description = "A Parameters resource: patients-treated, patients-with-follow-up, patients-evaluable, responders-30, responders-50 (valueInteger), responder-rate-30, responder-rate-50, mean-percent-change (valueDecimal, percent)", body = crate::openapi::Parameters, content_type = "application/fhir+json"),
        (status = 400, description = "start or end is not a FHIR date, or end is before start", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "Needs a read scope on all resource types; patient-scoped tokens are refused", body = crate::openapi::OperationOutcome, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn clinic_outcomes(
    request: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    if let Access::Patient(_) = principal.authorize(None, Interaction::Read)? {
        return Err(ApiError::Forbidden(
            "Clinic outcomes cover every patient; patient-scoped tokens cannot read them".into(),
        ));
    }
    let parameters = parse_form(request.query_string())?;
    let (from, to) = date_range(&parameters, state.writes.index.zone)?;
    let figures = outcomes::clinic_outcomes(&state.pool, from, to).await?;
    let given = |name: &str| parameters.iter().any(|(key, _)| key == name);
    Ok(parameters_response(&clinic_parameters(
        &figures,
        given("start").then_some(from),
        given("end").then_some(to),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Vec<(String, String)> {
        parse_form(text).unwrap()
    }

    #[test]
    fn start_and_end_cover_whole_days() {
        let (from, to) =
            date_range(&query("start=2026-01-01&end=2026-06-30"), chrono_tz::UTC).unwrap();
        assert_eq!(from, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(to, Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap());
        let (from, to) = date_range(&[], chrono_tz::UTC).unwrap();
        assert!(from.timestamp() < 0 && to > Utc::now());
    }

    #[test]
    fn malformed_or_reversed_dates_are_refused() {
        for text in [
            "start=2026-13-01",
            "end=yesterday",
            "start=2026&start=2027",
            "start=2026-02-01&end=2026-01-01",
        ] {
            assert!(
                matches!(
                    date_range(&query(text), chrono_tz::UTC),
                    Err(ApiError::BadRequest(..))
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn rates_are_over_evaluable_patients_and_left_out_without_any() {
        let figures = ClinicOutcomes {
            patients_treated: 4,
            patients_with_follow_up: 3,
            patients_evaluable: 3,
            responders_30: 2,
            responders_50: 1,
            mean_percent_change: Some(100.0 / 3.0),
        };
        let parameters = clinic_parameters(&figures, None, None);
        let list = parameters["parameter"].as_array().unwrap();
        let find = |name: &str| list.iter().find(|p| p["name"] == name).cloned();
        assert_eq!(find("responder-rate-30").unwrap()["valueDecimal"], 66.7);
        assert_eq!(find("responder-rate-50").unwrap()["valueDecimal"], 33.3);
        assert_eq!(find("mean-percent-change").unwrap()["valueDecimal"], 33.3);
        assert_eq!(find("patients-treated").unwrap()["valueInteger"], 4);
        let none = ClinicOutcomes {
            patients_treated: 0,
            patients_with_follow_up: 0,
            patients_evaluable: 0,
            responders_30: 0,
            responders_50: 0,
            mean_percent_change: None,
        };
        let parameters = clinic_parameters(&none, None, None).to_string();
        assert!(!parameters.contains("responder-rate") && !parameters.contains("mean-percent"));
    }
}
