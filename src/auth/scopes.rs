//! SMART on FHIR scopes (v2 `system/Patient.cruds`, `user/*.rs`; v1 `.read`/`.write`/`.*`)
//! and which permission each FHIR interaction needs.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeContext {
    System,
    User,
    Patient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }
}

/// A FHIR interaction, mapped to the SMART permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    Search,
}

impl Interaction {
    pub fn permission(self) -> Permission {
        match self {
            Interaction::Create => Permission::Create,
            Interaction::Read | Interaction::Vread | Interaction::HistoryInstance => {
                Permission::Read
            }
            Interaction::Update | Interaction::Patch => Permission::Update,
            Interaction::Delete => Permission::Delete,
            Interaction::HistoryType | Interaction::HistorySystem | Interaction::Search => {
                Permission::Search
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: ScopeContext,
    /// `None` for the `*` wildcard.
    pub resource_type: Option<String>,
    /// The granted permission letters, a subset of `cruds`.
    pub permissions: String,
    /// A SMART v2 search restriction (`.rs?category=vital-signs`) as name/value pairs: the
    /// scope reaches only resources that match it, for reading and searching.
    pub restriction: Option<Vec<(String, String)>>,
}

impl Scope {
    /// Parses one scope; scopes this server does not know (`openid`, `launch`, ...) give `None`.
    pub fn parse(text: &str) -> Option<Scope> {
        let (context, rest) = text.split_once('/')?;
        let context = match context {
            "system" => ScopeContext::System,
            "user" => ScopeContext::User,
            "patient" => ScopeContext::Patient,
            _ => return None,
        };
        let (resource_type, permissions) = rest.split_once('.')?;
        let (permissions, restriction) = match permissions.split_once('?') {
            Some((letters, query)) => (letters, Some(parse_restriction(query)?)),
            None => (permissions, None),
        };
        let permissions = match permissions {
            "read" => "rs".to_string(),
            "write" => "cud".to_string(),
            "*" => "cruds".to_string(),
            letters if is_v2_permission_string(letters) => letters.to_string(),
            _ => return None,
        };
        let resource_type = match resource_type {
            "*" => None,
            name if name.chars().next()?.is_ascii_uppercase() => Some(name.to_string()),
            _ => return None,
        };
        Some(Scope {
            context,
            resource_type,
            permissions,
            restriction,
        })
    }

    /// Does this scope grant `permission` on every resource of `resource_type`? A scope
    /// with a search restriction never does (see `grants_restricted`).
    pub fn grants(&self, resource_type: Option<&str>, permission: Permission) -> bool {
        self.restriction.is_none() && self.covers(resource_type, permission)
    }

    /// The search restriction under which this scope grants `permission` on
    /// `resource_type`, if it is a restricted scope that does. Restrictions are enforced
    /// as search filters, so they grant reading and searching only: a restricted `c`, `u`
    /// or `d` grants nothing.
    pub fn grants_restricted(
        &self,
        resource_type: &str,
        permission: Permission,
    ) -> Option<&[(String, String)]> {
        let readable = matches!(permission, Permission::Read | Permission::Search);
        let restriction = self.restriction.as_deref()?;
        (readable && self.covers(Some(resource_type), permission)).then_some(restriction)
    }

    fn covers(&self, resource_type: Option<&str>, permission: Permission) -> bool {
        let type_ok = match (&self.resource_type, resource_type) {
            (None, _) => true,
            (Some(granted), Some(wanted)) => granted == wanted,
            (Some(_), None) => false,
        };
        type_ok && self.permissions.contains(permission.letter())
    }
}

/// `name=value&name=value`; an empty query, name or value makes the scope unusable.
fn parse_restriction(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (!name.is_empty() && !value.is_empty()).then(|| (name.to_string(), value.to_string()))
        })
        .collect()
}

/// v2 permission strings are letters of `cruds` in that order, each at most once.
fn is_v2_permission_string(letters: &str) -> bool {
    let mut last = None;
    !letters.is_empty()
        && letters.chars().all(|c| {
            let position = "cruds".find(c);
            let ok = position.is_some() && position > last;
            last = position;
            ok
        })
}

pub fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split_whitespace().filter_map(Scope::parse).collect()
}

/// What a client may get of the scopes it asks for: each requested scope intersected with
/// each allowed one of the same context (`*` with a type gives the type, permission letters
/// in common), v1 forms written as v2 letters; a requested `?query` is kept. Unknown or
/// ungrantable scopes are dropped; the result has no duplicates.
pub fn grant(requested: &str, allowed: &str) -> Vec<String> {
    let allowed = parse_scopes(allowed);
    let mut granted: Vec<String> = Vec::new();
    for text in requested.split_whitespace() {
        let (base, query) = match text.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (text, String::new()),
        };
        let Some(wanted) = Scope::parse(base) else {
            continue;
        };
        for scope in allowed.iter().filter_map(|a| intersect(&wanted, a)) {
            let text = format!("{scope}{query}");
            if !granted.contains(&text) {
                granted.push(text);
            }
        }
    }
    granted
}

fn intersect(wanted: &Scope, allowed: &Scope) -> Option<String> {
    if wanted.context != allowed.context {
        return None;
    }
    let resource_type = match (&wanted.resource_type, &allowed.resource_type) {
        (None, None) => "*".to_string(),
        (Some(t), None) | (None, Some(t)) => t.clone(),
        (Some(a), Some(b)) if a == b => a.clone(),
        _ => return None,
    };
    let letters: String = "cruds"
        .chars()
        .filter(|c| wanted.permissions.contains(*c) && allowed.permissions.contains(*c))
        .collect();
    if letters.is_empty() {
        return None;
    }
    let context = match wanted.context {
        ScopeContext::System => "system",
        ScopeContext::User => "user",
        ScopeContext::Patient => "patient",
    };
    Some(format!("{context}/{resource_type}.{letters}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_forms() {
        let scope = Scope::parse("system/Patient.cruds").unwrap();
        assert!(scope.grants(Some("Patient"), Permission::Delete));
        assert!(!scope.grants(Some("Observation"), Permission::Read));
        let read = Scope::parse("user/*.read").unwrap();
        assert!(read.grants(Some("Observation"), Permission::Search));
        assert!(!read.grants(Some("Observation"), Permission::Create));
        let write = Scope::parse("system/Observation.write").unwrap();
        assert!(write.grants(Some("Observation"), Permission::Update));
        assert!(!write.grants(Some("Observation"), Permission::Read));
    }

    #[test]
    fn malformed_scopes_are_ignored() {
        assert!(Scope::parse("system/Patient.rc").is_none());
        assert!(Scope::parse("system/Patient.rr").is_none());
        assert!(Scope::parse("openid").is_none());
        assert!(Scope::parse("admin/Patient.r").is_none());
        assert!(Scope::parse("system/Observation.rs?").is_none());
        assert!(Scope::parse("system/Observation.rs?category").is_none());
        assert!(Scope::parse("system/Observation.rs?category=").is_none());
        assert_eq!(parse_scopes("openid system/*.rs").len(), 1);
    }

    #[test]
    fn restricted_scopes_keep_their_query_and_grant_reading_under_it() {
        let scope =
            Scope::parse("patient/Observation.rs?category=vital-signs&status=final").unwrap();
        assert_eq!(scope.resource_type.as_deref(), Some("Observation"));
        assert_eq!(scope.permissions, "rs");
        assert_eq!(
            scope.restriction,
            Some(vec![
                ("category".to_string(), "vital-signs".to_string()),
                ("status".to_string(), "final".to_string()),
            ])
        );
        assert!(!scope.grants(Some("Observation"), Permission::Read));
        assert_eq!(
            scope.grants_restricted("Observation", Permission::Search),
            scope.restriction.as_deref()
        );
        assert_eq!(scope.grants_restricted("Patient", Permission::Read), None);
        let writer = Scope::parse("system/Observation.cruds?category=laboratory").unwrap();
        assert_eq!(
            writer.grants_restricted("Observation", Permission::Create),
            None
        );
        assert_eq!(
            writer.grants_restricted("Observation", Permission::Delete),
            None
        );
        assert!(
            Scope::parse("system/Observation.rs")
                .unwrap()
                .restriction
                .is_none()
        );
    }

    #[test]
    fn grants_are_intersections() {
        assert_eq!(
            grant("system/*.cruds", "system/Patient.rs"),
            ["system/Patient.rs"]
        );
        assert_eq!(
            grant("system/Observation.read", "system/*.rs"),
            ["system/Observation.rs"]
        );
        assert_eq!(
            grant(
                "system/Observation.rs?category=laboratory",
                "system/*.cruds"
            ),
            ["system/Observation.rs?category=laboratory"]
        );
        assert!(grant("user/Patient.rs system/Patient.c", "system/Patient.rs").is_empty());
    }
}
