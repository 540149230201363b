//! SMART Backend Services client authentication: the OAuth2 error responses of the token
//! endpoint, and the check of a client's signed assertion (RS384 or ES384, `private_key_jwt`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

/// The longest lifetime a client assertion may claim, in seconds.
pub const MAX_ASSERTION_LIFETIME: i64 = 300;

/// An OAuth2 error (RFC 6749 section 5.2): `{"error", "error_description"}`.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new("invalid_client", description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        match self.code {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({"error": self.code, "error_description": self.description}))
    }
}

/// The claims of a client assertion this server reads.
#[derive(Debug, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub exp: i64,
    #[serde(default)]
    pub jti: Option<String>,
}

/// The header and unverified issuer of an assertion: which client claims to have sent it.
pub fn peek(assertion: &str) -> Result<(Header, String), OAuthError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| {
        OAuthError::invalid_client("the client assertion is not a JWT signed with RS384 or ES384")
    })?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(OAuthError::invalid_client(
            "the client assertion must be signed with RS384 or ES384",
        ));
    }
    let claims: AssertionClaims = jsonwebtoken::dangerous::insecure_decode_claims(assertion)
        .map_err(|_| OAuthError::invalid_client("the client assertion lacks iss or exp"))?;
    Ok((header, claims.iss))
}

/// The registered key the assertion names by `kid`, which must suit its algorithm.
fn signing_key(jwks: &Value, header: &Header) -> Result<DecodingKey, OAuthError> {
    let kid = header
        .kid
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_client("the client assertion has no kid"))?;
    let jwk = super::keys::jwk_by_kid(jwks, kid).ok_or_else(|| {
        OAuthError::invalid_client("no registered key of the client has that kid")
    })?;
    let suits = match (&jwk.algorithm, header.alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS384) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    };
    if !suits {
        return Err(OAuthError::invalid_client(
            "the key named by kid does not suit the assertion's alg",
        ));
    }
    DecodingKey::from_jwk(&jwk)
        .map_err(|_| OAuthError::invalid_client("the client's registered key is unusable"))
}

/// Verifies the assertion of `client_id` against its JWKS: signature, `iss` = `sub` =
/// client id, `aud` = the token URL, `exp` present and at most 300 s (+ leeway) ahead, `jti`
/// present. Returns the claims; the caller records the `jti`.
pub fn verify(
    assertion: &str,
    header: &Header,
    client_id: &str,
    jwks: &Value,
    token_url: &str,
    leeway: i64,
) -> Result<AssertionClaims, OAuthError> {
    let key = signing_key(jwks, header)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[client_id]);
    validation.set_audience(&[token_url]);
    validation.sub = Some(client_id.to_string());
    validation.leeway = leeway.max(0) as u64;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
        .map_err(|error| OAuthError::invalid_client(rejection(error.kind())))?
        .claims;
    let now = chrono::Utc::now().timestamp();
    if claims.exp > now + MAX_ASSERTION_LIFETIME + leeway {
        return Err(OAuthError::invalid_client(
            "the client assertion's exp is more than 5 minutes ahead",
        ));
    }
    if claims.jti.as_deref().is_none_or(str::is_empty) {
        return Err(OAuthError::invalid_client(
            "the client assertion has no jti",
        ));
    }
    Ok(claims)
}

fn rejection(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the client assertion has expired",
        ErrorKind::InvalidIssuer => "the client assertion's iss is not the client id",
        ErrorKind::InvalidSubject => "the client assertion's sub is not the client id",
        ErrorKind::InvalidAudience => "the client assertion's aud is not the token URL",
        ErrorKind::InvalidSignature => "the client assertion's signature does not verify",
        ErrorKind::MissingRequiredClaim(_) => "the client assertion lacks a required claim",
        _ => "the client assertion is malformed",
    }
}
