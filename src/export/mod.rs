//! FHIR Bulk Data Access (v2) `$export`: the kick-off parameters and the plan of a job
//! (`request`), the status and manifest a client polls for (`manifest`), and the workers
//! that run jobs in the background (`worker`). Jobs and their files live in PostgreSQL
//! (`store::export`), so any instance can serve a job's status and files, and a job whose
//! instance died is taken over by another.

pub mod manifest;
pub mod request;
pub mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A file is closed once it passes this size, so no file grows past a few tens of MB.
pub const FILE_BYTES_LIMIT: i64 = 32 * 1024 * 1024;

/// The export settings of an instance (from `config::BulkExportConfig`).
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub workers: usize,
    pub poll: Duration,
    pub retention: Duration,
    pub chunk: u32,
    pub file_resources: u32,
}

/// What the kick-off handlers and the workers of an instance share.
#[derive(Debug)]
pub struct ExportContext {
    pub settings: ExportSettings,
    /// Woken when a job is accepted, so a worker of this instance starts it at once.
    pub wake: Notify,
}

impl ExportContext {
    pub fn new(settings: ExportSettings) -> Self {
        ExportContext {
            settings,
            wake: Notify::new(),
        }
    }
}

/// The level a job exports at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`: every resource of the types.
    System,
    /// `[base]/Patient/$export`: the compartments of all patients.
    Patient,
    /// `[base]/Group/{id}/$export`: the compartments of the Group's member patients.
    Group,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::System => "system",
            Level::Patient => "patient",
            Level::Group => "group",
        }
    }

    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "system" => Some(Level::System),
            "patient" => Some(Level::Patient),
            "group" => Some(Level::Group),
            _ => None,
        }
    }
}

/// How a job reads one type, as stored with the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypePlan {
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The patient a patient-scoped token confines this type to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The type's `_typeFilter` queries (their parameters, form-encoded), OR-ed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
}
