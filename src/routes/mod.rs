//! The single route table, and the shared state handlers receive.

pub mod audit;
pub mod bundle;
pub mod conditional;
pub mod crud;
pub mod deadline;
pub mod everything;
pub mod export;
pub mod history;
pub mod http;
pub mod operations;
pub mod outcomes;
pub mod prior_auth;
pub mod reach;
pub mod report;
pub mod search;
pub mod smart;
pub mod subscriptions;
pub mod system;

use actix_web::web;

use crate::clinic::config::ClinicConfig;
use crate::error::ApiError;
use crate::export::ExportContext;
use crate::fhir::search::PageLimits;
use crate::fhir::strict_json::Limits;
use crate::store::Pool;
use crate::store::resources::WriteContext;
use crate::store::search::Total;

/// How many resources' worth of JSON values a batch or transaction body may carry.
const BUNDLE_VALUES_FACTOR: usize = 40;

/// What every handler can reach.
pub struct AppState {
    pub pool: Pool,
    /// FHIR base URL as clients see it, without trailing slash.
    pub base_url: String,
    pub page_limits: PageLimits,
    pub max_body_bytes: usize,
    pub max_bundle_bytes: usize,
    pub max_bundle_entries: usize,
    /// Depth and size limits of a resource body.
    pub json_limits: Limits,
    /// What every write needs: index extraction rules and the clinic's write rules.
    pub writes: WriteContext,
    pub max_includes: usize,
    /// `Bundle.total` of a first page when the client sends no `_total`.
    pub default_total: Total,
    /// The clinic's Organization id, the provider of prior-authorization Claims.
    pub clinic_organization: Option<String>,
    /// Bulk export settings, and the workers to wake when a job is accepted.
    pub exports: std::sync::Arc<ExportContext>,
}

impl AppState {
    /// A Bundle may hold as many values as `BUNDLE_VALUES_FACTOR` resources.
    pub fn bundle_json_limits(&self) -> Limits {
        Limits {
            max_values: self
                .json_limits
                .max_values
                .saturating_mul(BUNDLE_VALUES_FACTOR),
            ..self.json_limits
        }
    }

    /// The clinic's safety thresholds and treatment rules.
    pub fn clinic(&self) -> &ClinicConfig {
        &self.writes.clinic
    }
}

/// Every endpoint of the service. The FHIR interactions served here are the ones the
/// CapabilityStatement lists (`fhir::capability::TYPE_INTERACTIONS`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(system::healthz))
        .route("/readyz", web::get().to(system::readyz))
        .route("/metrics", web::get().to(system::metrics))
        .service(resource("/auth/token").route(web::post().to(smart::token)))
        .service(resource("/.well-known/jwks.json").route(web::get().to(smart::jwks)))
        .service(
            resource("/.well-known/smart-configuration")
                .route(web::get().to(smart::smart_configuration)),
        )
        .service(resource("/reports/patients/{id}").route(web::get().to(report::patient_report)))
        .service(
            web::scope("/fhir")
                .service(resource("").route(web::post().to(bundle::process)))
                .service(resource("/").route(web::post().to(bundle::process)))
                .service(resource("/metadata").route(web::get().to(system::metadata)))
                .service(
                    resource("/.well-known/smart-configuration")
                        .route(web::get().to(smart::smart_configuration)),
                )
                .service(resource("/_history").route(web::get().to(history::system_history)))
                .service(resource("/$outcomes").route(web::get().to(outcomes::clinic_outcomes)))
                .service(resource("/$export").route(web::get().to(export::system_export)))
                .service(resource("/Patient/$export").route(web::get().to(export::patient_export)))
                .service(resource("/Group/{id}/$export").route(web::get().to(export::group_export)))
                .service(
                    resource("/bulk-export/{job}")
                        .route(web::get().to(export::export_status))
                        .route(web::delete().to(export::cancel_export)),
                )
                .service(
                    resource("/bulk-export/{job}/{file}").route(web::get().to(export::export_file)),
                )
                .service(
                    resource("/Patient/{id}/$outcomes")
                        .route(web::get().to(outcomes::patient_outcomes)),
                )
                .service(
                    resource("/Patient/{id}/$everything")
                        .route(web::get().to(everything::everything_get))
                        .route(web::post().to(everything::everything_post)),
                )
                .service(
                    resource("/Patient/{id}/$treatment-status")
                        .route(web::get().to(operations::treatment_status)),
                )
                .service(
                    resource("/Patient/{id}/$medical-necessity")
                        .route(web::get().to(prior_auth::medical_necessity))
                        .route(web::post().to(prior_auth::medical_necessity_post)),
                )
                .service(
                    resource("/Subscription/{id}/$status")
                        .route(web::get().to(subscriptions::status)),
                )
                .service(
                    resource("/Subscription/{id}/$events")
                        .route(web::get().to(subscriptions::events)),
                )
                .service(resource("/AuditEvent").route(web::get().to(audit::search)))
                .service(resource("/AuditEvent/{id}").route(web::get().to(audit::read)))
                .service(resource("/{type}/$validate").route(web::post().to(operations::validate)))
                .service(resource("/{type}/_search").route(web::post().to(search::search_post)))
                .service(resource("/{type}/_history").route(web::get().to(history::type_history)))
                .service(
                    resource("/{type}/{id}/_history/{version}").route(web::get().to(crud::vread)),
                )
                .service(
                    resource("/{type}/{id}/_history")
                        .route(web::get().to(history::instance_history)),
                )
                .service(
                    resource("/{type}/{id}")
                        .route(web::get().to(crud::read))
                        .route(web::put().to(crud::update))
                        .route(web::patch().to(crud::patch))
                        .route(web::delete().to(crud::delete)),
                )
                .service(
                    resource("/{type}")
                        .route(web::get().to(search::search_get))
                        .route(web::post().to(crud::create))
                        .route(web::put().to(conditional::update))
                        .route(web::delete().to(conditional::delete)),
                )
                .default_service(web::to(not_found)),
        );
}

/// A resource of the table: `405` for the methods it does not serve, and every request
/// under the request deadline.
fn resource(
    path: &str,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path)
        .default_service(web::to(method_not_allowed))
        .wrap(actix_web::middleware::from_fn(deadline::enforce))
}

async fn method_not_allowed(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "{} is not supported on {}",
        request.method(),
        request
            .match_pattern()
            .unwrap_or_else(|| request.path().to_string())
    )))
}

pub async fn not_found(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "No endpoint at {}",
        request.path()
    )))
}
