//! HTTP integration tests against the real server and a real PostgreSQL database per test.

mod helpers;

mod access;
mod audit;
mod auth;
mod bulk;
mod bulk_export;
mod cli;
mod client_jwks;
mod conditional;
mod crud;
mod errors;
mod everything;
mod hardening;
mod history;
mod identity;
mod import;
mod medical_necessity;
mod oidc;
mod outcomes;
mod report;
mod safety;
mod scale_out;
mod search;
mod search_oracle;
mod search_params;
mod served;
mod smart;
mod subscriptions;
mod supporting_types;
mod system;
mod transactions;
mod treatment;
mod validation;
