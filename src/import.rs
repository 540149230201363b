//! `ketamine-fhir import FILE...`: a practice's existing data from NDJSON files (one
//! resource per line, of any served type). Every line is validated as the API validates a
//! resource, and the resources keep their ids. Nothing is loaded unless every line is good
//! and none of the ids exists yet: the files are read as a stream, and their resources
//! written in batches through the bulk load path inside one transaction that commits only
//! then.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::fhir::validation::{ValidationOptions, validate_resource};
use crate::fhir::{ResourceId, ResourceType};
use crate::store::Pool;
use crate::store::bulk::{self, Key, Load, NewResource};
use crate::store::resources::WriteContext;

/// Resources per batch written.
const BATCH: usize = 500;

/// A problem with one line of an input file (line 0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Every resource was loaded, in one transaction.
    Loaded { resources: usize },
    /// Nothing was loaded, because of these problems (in file and line order).
    Refused(Vec<LineError>),
}

/// Where a resource was read: the file's position among the inputs, and the line.
type Location = (usize, usize);

/// What reading the files found.
#[derive(Default)]
struct Read {
    errors: Vec<(Location, String)>,
    /// Every resource read, and where.
    seen: HashMap<Key, Location>,
}

/// Imports `files` as one all-or-nothing load.
pub async fn import(
    pool: &Pool,
    context: &WriteContext,
    files: &[PathBuf],
) -> anyhow::Result<Imported> {
    let (sender, receiver) = mpsc::channel(2);
    let reader = {
        let files = files.to_vec();
        let context = context.clone();
        tokio::task::spawn_blocking(move || read_files(&files, &context, &sender))
    };
    let loaded = bulk::load_all_or_nothing(pool, &context.clinic.ketamine, receiver).await;
    let mut read = reader.await?;
    let loaded = loaded?;
    for key in &loaded.existing {
        if let Some(location) = read.seen.get(key) {
            let message = format!("{}/{} already exists in the database", key.0, key.1);
            read.errors.push((*location, message));
        }
    }
    if loaded.committed && read.errors.is_empty() {
        return Ok(Imported::Loaded {
            resources: loaded.created,
        });
    }
    read.errors.sort();
    Ok(Imported::Refused(
        read.errors
            .into_iter()
            .map(|((file, line), message)| LineError {
                file: files[file].display().to_string(),
                line,
                message,
            })
            .collect(),
    ))
}

/// Reads and checks every line of `files`, sending the good resources in prepared batches
/// until the first problem (after it nothing will be loaded, but every line is still
/// checked, so that every problem is reported), then the verdict.
fn read_files(files: &[PathBuf], context: &WriteContext, sender: &mpsc::Sender<Load>) -> Read {
    let mut read = Read::default();
    let mut batch: Vec<NewResource> = Vec::with_capacity(BATCH);
    let mut receiving = true;
    for (position, path) in files.iter().enumerate() {
        let lines = match File::open(path) {
            Ok(file) => BufReader::new(file),
            Err(error) => {
                read.errors
                    .push(((position, 0), format!("cannot be opened: {error}")));
                continue;
            }
        };
        for_each_line(lines, |line_number, line| {
            let location = (position, line_number);
            let resource = match line.and_then(resource_of_line) {
                Ok(resource) => resource,
                Err(messages) => {
                    let located = messages.into_iter().map(|message| (location, message));
                    read.errors.extend(located);
                    return;
                }
            };
            let key = (resource.resource_type.to_string(), resource.id.to_string());
            if let Some(&(file, line)) = read.seen.get(&key) {
                let first = files[file].display();
                let message = format!(
                    "{}/{} appears again (first at {first}:{line})",
                    key.0, key.1
                );
                read.errors.push((location, message));
                return;
            }
            read.seen.insert(key, location);
            if read.errors.is_empty() && receiving {
                batch.push(resource);
                if batch.len() == BATCH {
                    receiving = send(sender, std::mem::take(&mut batch), context);
                }
            }
        });
    }
    if read.errors.is_empty() && receiving && !batch.is_empty() {
        receiving = send(sender, batch, context);
    }
    if receiving {
        let _ = sender.blocking_send(Load::End {
            valid: read.errors.is_empty(),
        });
    }
    read
}

/// Prepares and sends a batch; `false` once the loader has stopped listening.
fn send(sender: &mpsc::Sender<Load>, batch: Vec<NewResource>, context: &WriteContext) -> bool {
    sender
        .blocking_send(Load::Batch(Box::new(bulk::prepare(batch, context))))
        .is_ok()
}

/// Calls `each` with the number and text of every line that is not blank (or the reason
/// it could not be read); a read error ends the file.
fn for_each_line(
    mut lines: BufReader<File>,
    mut each: impl FnMut(usize, Result<&str, Vec<String>>),
) {
    let mut buffer = Vec::new();
    let mut number = 0;
    loop {
        buffer.clear();
        number += 1;
        match lines.read_until(b'\n', &mut buffer) {
            Ok(0) => return,
            Ok(_) => match std::str::from_utf8(&buffer) {
                Ok(text) if text.trim().is_empty() => {}
                Ok(text) => each(number, Ok(text)),
                Err(_) => each(number, Err(vec!["the line is not UTF-8 text".to_string()])),
            },
            Err(error) => {
                each(number, Err(vec![format!("cannot be read: {error}")]));
                return;
            }
        }
    }
}

/// The resource a line holds, validated as the API validates a resource it is to store;
/// or every problem found.
fn resource_of_line(line: &str) -> Result<NewResource, Vec<String>> {
    let resource: Value = serde_json::from_str(line).map_err(|error| {
        let text = error.to_string();
        let reason = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(reason, _)| reason);
        vec![format!(
            "malformed JSON at column {}: {reason}",
            error.column()
        )]
    })?;
    if !resource.is_object() {
        return Err(vec![
            "a line must hold one JSON object, a FHIR resource".into(),
        ]);
    }
    let name = resource["resourceType"]
        .as_str()
        .ok_or_else(|| vec!["the resource has no resourceType".to_string()])?;
    let resource_type = ResourceType::parse(name).map_err(|_| {
        vec![format!(
            "resourceType '{name}' is not a type this server serves"
        )]
    })?;
    if name == "Subscription" {
        return Err(vec![
            "Subscription resources are not imported: create them through the API, which checks their endpoints and starts their delivery".into(),
        ]);
    }
    let id = resource["id"].as_str().ok_or_else(|| {
        vec!["the resource has no id (imported resources keep the practice's ids)".to_string()]
    })?;
    let id = ResourceId::parse(id).map_err(|error| vec![message_of(error)])?;
    let report = validate_resource(name, &resource, ValidationOptions::default());
    let problems: Vec<String> = report
        .issues
        .iter()
        .filter(|issue| issue.is_error())
        .map(|issue| match &issue.expression {
            Some(expression) => format!("{expression}: {}", issue.diagnostics),
            None => issue.diagnostics.clone(),
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(NewResource {
        resource_type,
        id,
        content: resource,
    })
}

fn message_of(error: ApiError) -> String {
    match error {
        ApiError::BadRequest(text, _) => text,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_of_a_line_is_named() {
        let problems = |line: &str| resource_of_line(line).err().unwrap();
        assert!(problems("{not json")[0].starts_with("malformed JSON at column 2"));
        assert_eq!(
            problems("[1]"),
            ["a line must hold one JSON object, a FHIR resource"]
        );
        assert_eq!(
            problems(r#"{"resourceType": "Spaceship", "id": "a"}"#),
            ["resourceType 'Spaceship' is not a type this server serves"]
        );
        assert_eq!(
            problems(r#"{"resourceType": "Patient"}"#),
            ["the resource has no id (imported resources keep the practice's ids)"]
        );
        let invalid = problems(
            r#"{"resourceType": "Observation", "id": "o1", "code": {"text": "pain"}, "valueInteger": "seven"}"#,
        );
        assert!(
            invalid
                .iter()
                .any(|p| p.starts_with("Observation.status: ")),
            "{invalid:?}"
        );
        assert!(
            invalid
                .iter()
                .any(|p| p.starts_with("Observation.valueInteger: ")),
            "{invalid:?}"
        );
    }

    #[test]
    fn a_good_line_keeps_its_id() {
        let resource = resource_of_line(
            r#"{"resourceType": "Patient", "id": "mrn-0042", "gender": "female"}"#,
        )
        .unwrap();
        assert_eq!(resource.resource_type.as_str(), "Patient");
        assert_eq!(resource.id.as_str(), "mrn-0042");
    }
}
