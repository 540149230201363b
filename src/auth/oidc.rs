//! Access tokens of external OpenID Connect issuers (`OIDC_ISSUERS`): the issuer's discovery
//! document and JWK Set are fetched and cached, the signature is checked with the key the
//! token's `kid` names (RS256, RS384, ES256 or ES384, suiting the key), then `iss`, `aud`,
//! `exp` and `nbf`; scopes come from `scope` or `scp`.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::web;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;

use super::jwt::Principal;
use super::remote::{RemoteDocuments, has_kid};
use super::scopes::parse_scopes;
use crate::config::Config;
use crate::error::ApiError;

/// Bounds the cache of verified tokens; when full it is emptied.
const VERIFIED_CACHE_LIMIT: usize = 10_000;

/// The claims of an external access token this server reads.
#[derive(Debug, Deserialize)]
struct ExternalClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    scp: Option<Vec<String>>,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default, rename = "fhirUser")]
    fhir_user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IssuerClaim {
    iss: String,
}

/// The configured external issuers and the tokens of theirs already verified.
pub struct ExternalIssuers {
    issuers: Vec<String>,
    audience: String,
    leeway: u64,
    remote: web::Data<RemoteDocuments>,
    verified: Mutex<HashMap<String, (Principal, i64, i64)>>,
}

impl ExternalIssuers {
    pub fn new(config: &Config, remote: web::Data<RemoteDocuments>) -> Self {
        ExternalIssuers {
            issuers: config.oidc_issuers.clone(),
            audience: config
                .oidc_audience
                .clone()
                .unwrap_or_else(|| config.jwt_audience.clone()),
            leeway: config.jwt_leeway_seconds,
            remote,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The token's `iss` (unverified) when it is one of the configured issuers.
    pub fn issuer_of(&self, token: &str) -> Option<String> {
        if self.issuers.is_empty() {
            return None;
        }
        let claim: IssuerClaim = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
        self.issuers.contains(&claim.iss).then_some(claim.iss)
    }

    /// The principal of a token verified before and still within `exp`/`nbf`.
    pub fn cached(&self, token: &str) -> Option<Principal> {
        let now = chrono::Utc::now().timestamp();
        let leeway = self.leeway as i64;
        let cache = self.cache();
        let (principal, not_before, expires) = cache.get(token)?;
        (now < expires + leeway && now >= not_before - leeway).then(|| principal.clone())
    }

    /// Verifies a token of `issuer` against the issuer's published keys.
    pub async fn principal(&self, token: &str, issuer: &str) -> Result<Principal, ApiError> {
        if let Some(principal) = self.cached(token) {
            return Ok(principal);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("the access token is malformed"))?;
        let key = self.signing_key(issuer, &header).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&self.audience]);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<ExternalClaims>(token, &key, &validation)
            .map_err(|error| unauthorized(super::jwt::rejection(error.kind())))?
            .claims;
        let not_before = claims.nbf.unwrap_or(i64::MIN / 2);
        let expires = claims.exp;
        let principal = principal_of(claims);
        let mut cache = self.cache();
        if cache.len() >= VERIFIED_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(token.to_string(), (principal.clone(), not_before, expires));
        Ok(principal)
    }

    /// The issuer's key the token's `kid` names, fetched through its discovery document.
    async fn signing_key(&self, issuer: &str, header: &Header) -> Result<DecodingKey, ApiError> {
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::ES256 | Algorithm::ES384
        ) {
            return Err(unauthorized(
                "the access token must be signed with RS256, RS384, ES256 or ES384",
            ));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| unauthorized("the access token has no kid"))?;
        let jwks_uri = self.jwks_uri(issuer).await?;
        let jwks = self
            .remote
            .get(&jwks_uri, |jwks| has_kid(jwks, Some(kid)))
            .await
            .map_err(|failure| {
                unauthorized(format!("the issuer's keys are unavailable: {failure}"))
            })?;
        let jwk = super::keys::jwk_by_kid(&jwks, kid)
            .ok_or_else(|| unauthorized("no key of the issuer has the access token's kid"))?;
        if !suits(&jwk, header.alg) {
            return Err(unauthorized(
                "the issuer's key named by kid does not suit the access token's alg",
            ));
        }
        DecodingKey::from_jwk(&jwk).map_err(|_| unauthorized("the issuer's key is unusable"))
    }

    /// The `jwks_uri` of the issuer's discovery document, whose `issuer` must be the issuer.
    async fn jwks_uri(&self, issuer: &str) -> Result<String, ApiError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery = self.remote.get(&url, |_| true).await.map_err(|failure| {
            unauthorized(format!(
                "the issuer's discovery document is unavailable: {failure}"
            ))
        })?;
        if discovery["issuer"].as_str() != Some(issuer) {
            return Err(unauthorized(
                "the issuer's discovery document names another issuer",
            ));
        }
        discovery["jwks_uri"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| unauthorized("the issuer's discovery document has no jwks_uri"))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Principal, i64, i64)>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn unauthorized(reason: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(reason.into())
}

/// Does the key's type (and curve) match the algorithm, so an RSA key never checks an EC
/// signature or the other way round?
fn suits(jwk: &Jwk, alg: Algorithm) -> bool {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::RS384) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    }
}

/// Scopes from `scope` (space-separated) or else `scp` (a list).
fn principal_of(claims: ExternalClaims) -> Principal {
    let scope = claims
        .scope
        .or_else(|| claims.scp.map(|list| list.join(" ")))
        .unwrap_or_default();
    Principal {
        subject: claims.sub,
        scopes: parse_scopes(&scope),
        patient: claims.patient,
        fhir_user: claims.fhir_user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(value: serde_json::Value) -> ExternalClaims {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn scopes_come_from_scope_or_else_scp_and_fhir_user_is_kept() {
        let spaced = principal_of(claims(serde_json::json!({"sub": "a", "exp": 1,
            "scope": "patient/*.rs", "patient": "p1", "fhirUser": "Practitioner/7"})));
        assert_eq!(spaced.scopes, parse_scopes("patient/*.rs"));
        assert_eq!(spaced.patient.as_deref(), Some("p1"));
        assert_eq!(spaced.fhir_user.as_deref(), Some("Practitioner/7"));
        let listed = principal_of(claims(serde_json::json!({"sub": "a", "exp": 1,
            "scp": ["system/Patient.rs", "system/Observation.rs"]})));
        assert_eq!(
            listed.scopes,
            parse_scopes("system/Patient.rs system/Observation.rs")
        );
        assert_eq!(listed.fhir_user, None);
    }

    #[test]
    fn the_algorithm_must_suit_the_key_type_and_curve() {
        let ec: Jwk = serde_json::from_value(serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}))
        .unwrap();
        assert!(suits(&ec, Algorithm::ES256));
        assert!(!suits(&ec, Algorithm::ES384));
        assert!(!suits(&ec, Algorithm::RS256));
    }
}
