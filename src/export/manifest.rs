//! What a client polling an export sees: the status and file URLs, the progress of a
//! running job (`X-Progress`), and the manifest of a completed one.

use serde_json::{Value, json};

use crate::fhir::resource::instant;
use crate::store::export::{ExportFile, JobState};

/// The path segment under the FHIR base that jobs live at.
pub const JOBS_PATH: &str = "bulk-export";

/// Where a job's status is polled (and the job cancelled).
pub fn status_url(base_url: &str, job_id: &str) -> String {
    format!("{base_url}/{JOBS_PATH}/{job_id}")
}

/// Where one output file of a job is downloaded.
pub fn file_url(base_url: &str, job_id: &str, file_number: i32) -> String {
    format!("{base_url}/{JOBS_PATH}/{job_id}/{file_number}.ndjson")
}

/// The file number of a file URL's last segment (`3.ndjson`).
pub fn file_number(segment: &str) -> Option<i32> {
    segment
        .strip_suffix(".ndjson")?
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// The `X-Progress` of a job not finished yet.
pub fn progress(job: &JobState) -> String {
    match (job.status.as_str(), job.estimated) {
        ("queued", _) => "queued".to_string(),
        (_, Some(estimated)) => format!(
            "exported {} of about {} resources",
            job.exported,
            estimated.max(job.exported)
        ),
        (_, None) => format!("exported {} resources", job.exported),
    }
}

/// The manifest of a completed job: every file with its type and count.
pub fn manifest(job: &JobState, files: &[ExportFile], base_url: &str, job_id: &str) -> Value {
    let output: Vec<Value> = files
        .iter()
        .map(|file| {
            json!({
                "type": file.resource_type,
                "url": file_url(base_url, job_id, file.file_number),
                "count": file.resource_count,
            })
        })
        .collect();
    json!({
        "transactionTime": instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": true,
        "output": output,
        "error": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_numbers_come_from_ndjson_names() {
        assert_eq!(file_number("3.ndjson"), Some(3));
        assert_eq!(file_number("0.ndjson"), None);
        assert_eq!(file_number("3"), None);
        assert_eq!(file_number("x.ndjson"), None);
    }
}
