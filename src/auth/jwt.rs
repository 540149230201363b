//! Access tokens: ES256 verification with pinned algorithm, issuer, audience and clock
//! leeway, the authenticated `Principal` extractor, and issuing tokens for `token`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::keys::read_key_file;
use super::oidc::ExternalIssuers;
use super::scopes::{Scope, parse_scopes};
use crate::config::Config;
use crate::error::ApiError;

/// Access-token claims. `iss`, `aud`, `exp`, `nbf` and `sub` are required and checked;
/// `aud` may be a string or a list, as authorization servers differ.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub nbf: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated SMART scopes; none means no access.
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Verifies access tokens; built once at start-up from the public key files: the current
/// key and the previous ones still honoured after a key rotation.
pub struct TokenVerifier {
    /// Verification keys by `kid`; the current key first.
    keys: Vec<(String, DecodingKey)>,
    /// The public keys as JWKs, served at `/.well-known/jwks.json`.
    jwks: Vec<Value>,
    validation: Validation,
    leeway: i64,
    /// Tokens already verified, so a client's repeated token costs one signature check.
    /// Entries are re-checked against `exp`/`nbf` on every use.
    verified: Mutex<HashMap<String, Verified>>,
}

#[derive(Clone)]
struct Verified {
    principal: Principal,
    not_before: i64,
    expires: i64,
}

/// Bounds the cache; when full it is emptied and refills with the tokens in use.
const VERIFIED_CACHE_LIMIT: usize = 10_000;

impl TokenVerifier {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let previous = config
            .jwt_previous_public_key_files
            .iter()
            .filter(|path| !path.as_os_str().is_empty());
        let mut keys = Vec::new();
        let mut jwks = Vec::new();
        let current = std::iter::once((&config.jwt_public_key_file, "JWT public key"));
        for (path, what) in current.chain(previous.map(|path| (path, "previous JWT public key"))) {
            let (kid, key, jwk) = verification_key(path, what)?;
            if keys.iter().all(|(known, _)| *known != kid) {
                keys.push((kid, key));
                jwks.push(jwk);
            }
        }
        // Only ES256: a token with any other `alg` (none, HS256, RS256) is refused.
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.leeway = config.jwt_leeway_seconds;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Ok(TokenVerifier {
            keys,
            jwks,
            validation,
            leeway: config.jwt_leeway_seconds as i64,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// The principal a bearer token stands for, verifying the signature once per token.
    pub fn principal(&self, token: &str) -> Result<Principal, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let cached = self.cache().get(token).cloned();
        if let Some(verified) = cached
            && now < verified.expires + self.leeway
            && now >= verified.not_before - self.leeway
        {
            return Ok(verified.principal);
        }
        let claims = self.verify(token)?;
        let verified = Verified {
            not_before: claims.nbf,
            expires: claims.exp,
            principal: Principal {
                subject: claims.sub,
                scopes: parse_scopes(&claims.scope),
                patient: claims.patient,
                fhir_user: None,
            },
        };
        let mut cache = self.cache();
        if cache.len() >= VERIFIED_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(token.to_string(), verified.clone());
        Ok(verified.principal)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        // A panic while holding the lock leaves a valid map; keep using it.
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The verification keys as JWKs, the current key first.
    pub fn jwks(&self) -> &[Value] {
        &self.jwks
    }

    /// Clock leeway in seconds.
    pub fn leeway(&self) -> i64 {
        self.leeway
    }

    /// The key a token's `kid` names; a token without `kid` is checked with the current key.
    /// A `kid` that is none of this server's keys is refused before any check.
    fn key_for(&self, token: &str) -> Result<&DecodingKey, ApiError> {
        let kid = jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|header| header.kid);
        let found = match kid {
            None => self.keys.first(),
            Some(kid) => self.keys.iter().find(|(known, _)| *known == kid),
        };
        found.map(|(_, key)| key).ok_or_else(|| {
            ApiError::Unauthorized(
                "the access token's signing key (kid) is not this server's; the signature cannot be verified".into(),
            )
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let key = self.key_for(token)?;
        decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| ApiError::Unauthorized(rejection(error.kind()).to_string()))
    }
}

/// Why an access token was refused, for the 401's diagnostics.
pub(crate) fn rejection(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the access token has expired",
        ErrorKind::ImmatureSignature => "the access token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "the access token has the wrong issuer",
        ErrorKind::InvalidAudience => "the access token has the wrong audience",
        ErrorKind::InvalidAlgorithm => "the access token must be signed with ES256",
        ErrorKind::InvalidSignature => "the access token signature does not verify",
        ErrorKind::MissingRequiredClaim(_) => "the access token lacks a required claim",
        _ => "the access token is malformed",
    }
}

/// A public key file as a verification key, with its `kid` and JWK.
fn verification_key(path: &Path, what: &str) -> anyhow::Result<(String, DecodingKey, Value)> {
    let pem = read_key_file(path, what)?;
    let key = DecodingKey::from_ec_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "the {what} {} is not an EC P-256 PEM key: {e}",
            path.display()
        )
    })?;
    let jwk = super::keys::public_jwk(&pem)?;
    let kid = jwk["kid"].as_str().unwrap_or_default().to_string();
    Ok((kid, key, jwk))
}

/// The authenticated caller: token subject and granted scopes.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub scopes: Vec<Scope>,
    pub patient: Option<String>,
    /// The `fhirUser` claim of an external issuer's token: the user's FHIR resource URL.
    pub fhir_user: Option<String>,
}

fn bearer_token(request: &HttpRequest) -> Result<&str, ApiError> {
    let header = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".into())
        })?;
    let text = header
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid text".into()))?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must be 'Bearer <token>'".into(),
        )),
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let principal = verified_principal(&request).await?;
            // The handler is about to act for this principal: a write it commits will
            // carry the request's AuditEvent.
            crate::audit::in_flight::note(&request);
            Ok(principal)
        })
    }
}

/// The principal of `request`'s bearer token, known without fetching anything: the
/// server's own token, or an external issuer's token verified before. The verified
/// principal is kept in the request's extensions, so the rate limiter, which asks first,
/// and the handler's extractor verify the token once between them.
pub fn request_principal(request: &HttpRequest) -> Result<Principal, ApiError> {
    if let Some(principal) = request.extensions().get::<Principal>() {
        return Ok(principal.clone());
    }
    let verifier = request
        .app_data::<web::Data<TokenVerifier>>()
        .ok_or_else(|| ApiError::internal("token verifier not configured"))?;
    let token = bearer_token(request)?;
    let principal = verifier.principal(token).or_else(|refusal| {
        request
            .app_data::<web::Data<ExternalIssuers>>()
            .and_then(|issuers| issuers.cached(token))
            .ok_or(refusal)
    })?;
    request.extensions_mut().insert(principal.clone());
    Ok(principal)
}

/// [`request_principal`], and else, for a token of a configured external issuer, its
/// verification against the issuer's published keys (fetched, hence async).
pub async fn verified_principal(request: &HttpRequest) -> Result<Principal, ApiError> {
    let refusal = match request_principal(request) {
        Ok(principal) => return Ok(principal),
        Err(refusal) => refusal,
    };
    let Some(issuers) = request.app_data::<web::Data<ExternalIssuers>>().cloned() else {
        return Err(refusal);
    };
    let token = bearer_token(request)?;
    let Some(issuer) = issuers.issuer_of(token) else {
        return Err(refusal);
    };
    let principal = issuers.principal(token, &issuer).await?;
    request.extensions_mut().insert(principal.clone());
    Ok(principal)
}

/// Signs access tokens with the configured private key, naming its `kid`.
pub struct TokenSigner {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
}

impl TokenSigner {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let pem = read_key_file(&config.jwt_private_key_file, "JWT private key")?;
        let key = EncodingKey::from_ec_pem(&pem)
            .map_err(|e| anyhow::anyhow!("the JWT private key is not an EC P-256 PEM key: {e}"))?;
        Ok(TokenSigner {
            key,
            kid: super::keys::kid_of_private_key(&pem)?,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(
        &self,
        subject: &str,
        scope: &str,
        patient: Option<&str>,
        ttl_seconds: i64,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: Audience::One(self.audience.clone()),
            exp: now + ttl_seconds,
            nbf: now,
            iat: Some(now),
            jti: Some(uuid::Uuid::new_v4().to_string()),
            scope: scope.to_string(),
            patient: patient.map(str::to_string),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(encode(&header, &claims, &self.key)?)
    }
}

/// Signs an access token with the configured private key (the `token` command).
pub fn issue_token(
    config: &Config,
    subject: &str,
    scope: &str,
    patient: Option<&str>,
    ttl_seconds: i64,
) -> anyhow::Result<String> {
    TokenSigner::from_config(config)?.sign(subject, scope, patient, ttl_seconds)
}
