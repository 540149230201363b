//! OperationOutcome building blocks: issues with severity, code, diagnostics and expression.

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One `OperationOutcome.issue`. `code` is from the R4 issue-type value set
/// (`invalid`, `structure`, `required`, `value`, `invariant`, `not-found`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: &'static str,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    pub fn warning(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(code, diagnostics)
        }
    }

    pub fn information(diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Information,
            ..Issue::error("informational", diagnostics)
        }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }

    fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.as_str(),
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        issue
    }
}

/// An OperationOutcome resource holding `issues` (at least one; an empty list becomes
/// a single informational "All OK" issue, as FHIR requires one).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = if issues.is_empty() {
        vec![Issue::information("All OK").to_json()]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_with_expression_serializes_as_fhir() {
        let outcome = operation_outcome(&[
            Issue::error("required", "missing status").at("Observation.status")
        ]);
        assert_eq!(
            outcome,
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "required",
                "diagnostics": "missing status", "expression": ["Observation.status"]}]})
        );
    }

    #[test]
    fn empty_outcome_has_one_informational_issue() {
        let outcome = operation_outcome(&[]);
        assert_eq!(outcome["issue"][0]["severity"], "information");
        assert_eq!(outcome["issue"].as_array().unwrap().len(), 1);
    }
}
