//! ketamine-fhir: a FHIR R4 server for ketamine-infusion pain clinics.

pub mod audit;
pub mod auth;
pub mod clinic;
pub mod config;
pub mod error;
pub mod export;
pub mod fhir;
pub mod fuzzing;
pub mod import;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod security;
pub mod seed;
pub mod startup;
pub mod store;
pub mod subscriptions;
pub mod telemetry;
