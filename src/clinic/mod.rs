//! The clinic's own logic on top of the generic FHIR store: infusion safety rules, treatment
//! series, outcome measures, the patient report and the prior-authorization package.
//! Everything here is computed from typed views of the stored JSON (`record`); the SQL that
//! fetches it lives in `store::clinic` and `store::prior_auth`.

pub mod billing;
pub mod chart;
pub mod codes;
pub mod config;
pub mod facts;
pub mod outcomes;
pub mod prior_auth;
pub mod record;
pub mod report;
pub mod safety;
pub mod series;
pub mod treatment;
