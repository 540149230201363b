//! `Patient/{id}/$medical-necessity`: the prior-authorization package a clinic sends on to a
//! payer's Da Vinci PAS `Claim/$submit` (`GET` with query parameters, `POST` with a
//! Parameters body). Nothing is stored.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::AppState;
use super::http::{RESOURCE_CONTENT_TYPES, parse_json, read_body, require_content_type};
use super::operations::{date_parameter, readable_patient, single_parameter};
use super::search::parse_form;
use crate::auth::access::Access;
use crate::auth::{Interaction, Principal};
use crate::clinic::billing::is_ndc;
use crate::clinic::config::ClinicConfig;
use crate::clinic::prior_auth::{
    self, BilledInfusions, INCLUDED_TYPES, PackageContext, PackageRequest, PlannedSeries,
};
use crate::error::{ApiError, ApiResult};
use crate::fhir::dates::date_range_in;
use crate::fhir::parameters::name_value_pairs;
use crate::fhir::{FHIR_JSON, ResourceId};
use crate::store;

/// The operation's parameters, and those every endpoint accepts and ignores.
const PARAMETERS: &[&str] = &[
    "coverage",
    "start",
    "end",
    "planned-infusions",
    "planned-minutes",
    "planned-ndc",
];
const IGNORED: &[&str] = &["_format", "_pretty"];

#[utoipa::path(
    get, path = "/fhir/Patient/{id}/$medical-necessity", tag = "FHIR operations",
    summary = "The prior-authorization package for a payer: a Claim (use preauthorization) and every resource it references",
    description = "A collection Bundle shaped as the Da Vinci PAS request Bundle of Claim/$submit: first a Claim \
                   built by the server (never stored) with the patient's active ICD-10-CM diagnoses, the Coverage \
                   in force and its payor, the clinic as provider, the primary-care physician, supportingInfo \
                   pointing at the evidence (prior treatments, opioid use, pain/PEG/PHQ-9 at baseline and \
                   follow-up, the infusions given) and an outcome summary, and item lines for the infusions \
                   (CPT 96365 first hour, 96366 each further hour past 30 minutes, HCPCS J3490 with the NDC); \
                   then each referenced resource once, fullUrl its absolute URL. Needs read access to Patient, \
                   Coverage, Organization, Practitioner, Condition, MedicationRequest, Observation, \
                   QuestionnaireResponse and MedicationAdministration. docs/INTEROP.md maps every element.",
    params(
        ("id" = String, Path, description = "Patient id, e.g. demo-patient-01"),
        ("coverage" = Option<String>, Query, description = "Id of the Coverage to bill (default: the patient's Coverage in force, the lowest order)"),
        ("start" = Option<String>, Query, description = "Service period start (date): infusions given from then on are billed; with end"),
        ("end" = Option<String>, Query, description = "Service period end (date, that day included); with start. Default period: the current series"),
        ("planned-infusions" = Option<u32>, Query, description = "Infusions not yet given to authorize (1 to the series maximum); with planned-minutes"),
        ("planned-minutes" = Option<u32>, Query, description = "Planned length of each planned infusion, within the clinic's infusion length limits"),
        ("planned-ndc" = Option<String>, Query, description = "NDC of the product planned, for the J3490 drug line of the planned infusions")
    ),
    responses(
        (status = 200, description = "A collection Bundle: the Claim (fullUrl urn:uuid), then Patient, Coverage, payor, clinic, primary-care physician and the evidence", body = crate::openapi::AnyResource, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn medical_necessity(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let patient = authorized_patient(&state, &principal, &path).await?;
    let parameters = parse_form(request.query_string())?;
    package(&state, patient, &parameters).await
}

#[utoipa::path(
    post, path = "/fhir/Patient/{id}/$medical-necessity", tag = "FHIR operations",
    summary = "The prior-authorization package, with the parameters in a Parameters body",
    description = "As the GET form; each parameter is a Parameters.parameter with a primitive value \
                   (valueId or valueString for coverage, valueDate for start and end, valueInteger or \
                   valuePositiveInt for planned-infusions and planned-minutes, valueString for planned-ndc).",
    params(("id" = String, Path, description = "Patient id, e.g. demo-patient-01")),
    request_body(content = crate::openapi::AnyResource, content_type = "application/fhir+json", description = "A Parameters resource"),
    responses(
        (status = 200, description = "The package Bundle, as for GET", body = crate::openapi::AnyResource, content_type = "application/fhir+json")
    ),
    security(("bearer_jwt" = []))
)]
pub async fn medical_necessity_post(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    principal: Principal,
) -> ApiResult<HttpResponse> {
    let patient = authorized_patient(&state, &principal, &path).await?;
    require_content_type(&request, RESOURCE_CONTENT_TYPES)?;
    let body = read_body(&request, payload, state.max_body_bytes).await?;
    let parameters = name_value_pairs(
        &parse_json(&body, state.json_limits)?,
        "The body must be a Parameters resource",
    )?;
    package(&state, patient, &parameters).await
}

/// The live Patient, if the caller may read it and every type a package holds.
async fn authorized_patient(state: &AppState, principal: &Principal, id: &str) -> ApiResult<Value> {
    let (patient, _) = readable_patient(state, principal, id).await?;
    for resource_type in INCLUDED_TYPES {
        match principal.authorize(Some(resource_type), Interaction::Read) {
            Ok(Access::Full) => {}
            Ok(Access::Patient(allowed)) if allowed == id => {}
            Ok(Access::Patient(_)) => {
                return Err(ApiError::Forbidden(format!(
                    "The access token reads {resource_type} resources of another patient only"
                )));
            }
            Err(ApiError::Forbidden(reason)) => {
                return Err(ApiError::Forbidden(format!(
                    "The medical-necessity package holds {resource_type} resources, which this \
                     token may not read: {reason}"
                )));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(patient)
}

async fn package(
    state: &AppState,
    patient: Value,
    parameters: &[(String, String)],
) -> ApiResult<HttpResponse> {
    let zone = state.writes.index.zone;
    let now = Utc::now();
    let request = package_request(parameters, state.clinic(), zone, now)?;
    let clinic_organization = state.clinic_organization.as_deref();
    let sources =
        store::prior_auth::package_sources(&state.pool, patient, clinic_organization).await?;
    let context = PackageContext {
        config: state.clinic(),
        base_url: &state.base_url,
        zone,
        clinic_organization,
        now,
        package_id: uuid::Uuid::new_v4(),
    };
    let bundle =
        prior_auth::build(&sources, &request, &context).map_err(ApiError::Unprocessable)?;
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).json(bundle))
}

/// What the caller asks for, or a 400 naming the parameter at fault.
fn package_request(
    parameters: &[(String, String)],
    config: &ClinicConfig,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> ApiResult<PackageRequest> {
    if let Some((name, _)) = parameters
        .iter()
        .find(|(name, _)| !PARAMETERS.contains(&name.as_str()) && !IGNORED.contains(&name.as_str()))
    {
        return Err(ApiError::bad_parameter(
            name,
            format!(
                "Unknown parameter '{name}'; $medical-necessity takes {}",
                PARAMETERS.join(", ")
            ),
        ));
    }
    let coverage = single_parameter(parameters, "coverage")?
        .map(|id| {
            ResourceId::parse(id)
                .map(|id| id.as_str().to_string())
                .map_err(|_| {
                    ApiError::bad_parameter(
                        "coverage",
                        format!("The parameter 'coverage' must be a Coverage id; got '{id}'"),
                    )
                })
        })
        .transpose()?;
    let period = service_period(parameters, zone)?;
    let planned = planned_series(parameters, config, period, zone, now)?;
    let billed = match (period, &planned) {
        (Some((from, to)), _) => BilledInfusions::StartedBetween(from, to),
        (None, Some(planned)) => BilledInfusions::StartedBetween(planned.from, planned.to),
        (None, None) => BilledInfusions::CurrentSeries,
    };
    Ok(PackageRequest {
        coverage,
        billed,
        planned,
    })
}

/// `[start, end)` from the `start` and `end` dates (both or neither).
fn service_period(
    parameters: &[(String, String)],
    zone: chrono_tz::Tz,
) -> ApiResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    match (
        date_parameter(parameters, "start", zone)?,
        date_parameter(parameters, "end", zone)?,
    ) {
        (None, None) => Ok(None),
        (Some((from, _)), Some((_, to))) if to > from => Ok(Some((from, to))),
        (Some(_), Some(_)) => Err(ApiError::bad_parameter(
            "end",
            "The parameter 'end' must not be before 'start'",
        )),
        (given, _) => Err(ApiError::bad_parameter(
            if given.is_some() { "end" } else { "start" },
            "The service period needs both 'start' and 'end' (or neither, for the current series)",
        )),
    }
}

/// The planned series (`planned-infusions` with `planned-minutes`, and optionally
/// `planned-ndc`), over the service period or, by default, the longest a series may last
/// from today.
fn planned_series(
    parameters: &[(String, String)],
    config: &ClinicConfig,
    period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> ApiResult<Option<PlannedSeries>> {
    let infusions = whole_number(parameters, "planned-infusions")?;
    let minutes = whole_number(parameters, "planned-minutes")?;
    let ndc = single_parameter(parameters, "planned-ndc")?;
    let (infusions, minutes) = match (infusions, minutes) {
        (Some(infusions), Some(minutes)) => (infusions, minutes),
        (None, None) if ndc.is_none() => return Ok(None),
        (None, None) => {
            return Err(ApiError::bad_parameter(
                "planned-ndc",
                "The parameter 'planned-ndc' goes with 'planned-infusions' and 'planned-minutes'",
            ));
        }
        (given, _) => {
            return Err(ApiError::bad_parameter(
                if given.is_some() {
                    "planned-minutes"
                } else {
                    "planned-infusions"
                },
                "A planned series needs both 'planned-infusions' and 'planned-minutes'",
            ));
        }
    };
    let most = config.series.max_infusions as u32;
    if infusions == 0 || infusions > most {
        return Err(ApiError::bad_parameter(
            "planned-infusions",
            format!(
                "The parameter 'planned-infusions' must be between 1 and {most} (the most infusions of a series)"
            ),
        ));
    }
    let (shortest, longest) = (config.dose.min_minutes, config.dose.max_minutes);
    if f64::from(minutes) < shortest || f64::from(minutes) > longest {
        return Err(ApiError::bad_parameter(
            "planned-minutes",
            format!(
                "The parameter 'planned-minutes' must be between {shortest} and {longest} (the clinic's infusion length limits)"
            ),
        ));
    }
    if let Some(ndc) = ndc.filter(|ndc| !is_ndc(ndc)) {
        return Err(ApiError::bad_parameter(
            "planned-ndc",
            format!(
                "The parameter 'planned-ndc' must be an NDC (10 digits as 4-4-2, 5-3-2 or 5-4-1, or 11 digits); got '{ndc}'"
            ),
        ));
    }
    let (from, to) = match period {
        Some(period) => period,
        None => {
            let today = now.with_timezone(&zone).format("%Y-%m-%d").to_string();
            let (midnight, _) = date_range_in(&today, zone)
                .ok_or_else(|| ApiError::internal("today is not a date"))?;
            (
                midnight,
                midnight + Duration::weeks(config.series.max_weeks),
            )
        }
    };
    Ok(Some(PlannedSeries {
        infusions,
        minutes,
        ndc: ndc.map(str::to_string),
        from,
        to,
    }))
}

fn whole_number(parameters: &[(String, String)], name: &str) -> ApiResult<Option<u32>> {
    single_parameter(parameters, name)?
        .map(|text| {
            text.parse::<u32>().map_err(|_| {
                ApiError::bad_parameter(
                    name,
                    format!("The parameter '{name}' must be a whole number; got '{text}'"),
                )
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn request(query: &str) -> ApiResult<PackageRequest> {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 15, 0, 0).unwrap();
        package_request(
            &parse_form(query).unwrap(),
            &ClinicConfig::default(),
            chrono_tz::Europe::Berlin,
            now,
        )
    }

    fn refused(query: &str) -> String {
        match request(query) {
            Err(ApiError::BadRequest(_, Some(parameter))) => parameter,
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn by_default_the_current_series_is_billed_and_nothing_is_planned() {
        assert_eq!(
            request("").unwrap(),
            PackageRequest {
                coverage: None,
                billed: BilledInfusions::CurrentSeries,
                planned: None
            }
        );
        let named = request("coverage=cov-1&_format=json").unwrap();
        assert_eq!(named.coverage.as_deref(), Some("cov-1"));
    }

    #[test]
    fn a_planned_series_spans_the_longest_series_from_today_in_the_clinic_zone() {
        let planned =
            request("planned-infusions=6&planned-minutes=60&planned-ndc=99999-0100-10").unwrap();
        let midnight = Utc.with_ymd_and_hms(2026, 12, 1, 23, 0, 0).unwrap();
        let expected = PlannedSeries {
            infusions: 6,
            minutes: 60,
            ndc: Some("99999-0100-10".into()),
            from: midnight,
            to: midnight + Duration::weeks(6),
        };
        assert_eq!(planned.planned, Some(expected));
        assert_eq!(
            planned.billed,
            BilledInfusions::StartedBetween(midnight, midnight + Duration::weeks(6))
        );
        let dated = request("start=2026-03-01&end=2026-03-31").unwrap();
        assert_eq!(
            dated.billed,
            BilledInfusions::StartedBetween(
                Utc.with_ymd_and_hms(2026, 2, 28, 23, 0, 0).unwrap(),
                Utc.with_ymd_and_hms(2026, 3, 31, 22, 0, 0).unwrap()
            )
        );
    }

    #[test]
    fn bad_parameters_are_refused_naming_the_parameter() {
        let cases = [
            ("coverage=no%20spaces", "coverage"),
            ("coverage=a&coverage=b", "coverage"),
            ("start=2026-03-01", "end"),
            ("end=2026-03-01", "start"),
            ("start=2026-03-05&end=2026-03-01", "end"),
            ("start=yesterday&end=2026-03-01", "start"),
            ("planned-infusions=4", "planned-minutes"),
            ("planned-minutes=60", "planned-infusions"),
            (
                "planned-infusions=0&planned-minutes=60",
                "planned-infusions",
            ),
            (
                "planned-infusions=7&planned-minutes=60",
                "planned-infusions",
            ),
            (
                "planned-infusions=four&planned-minutes=60",
                "planned-infusions",
            ),
            ("planned-infusions=4&planned-minutes=30", "planned-minutes"),
            ("planned-infusions=4&planned-minutes=121", "planned-minutes"),
            ("planned-ndc=99999-0100-10", "planned-ndc"),
            (
                "planned-infusions=4&planned-minutes=60&planned-ndc=123",
                "planned-ndc",
            ),
            ("patient=p1", "patient"),
        ];
        for (query, parameter) in cases {
            assert_eq!(refused(query), parameter, "{query}");
        }
    }
}
