//! SMART Backend Services endpoints: the token endpoint (`client_credentials` with a
//! `private_key_jwt` assertion), the server's JWKS, and `.well-known/smart-configuration`.

use std::collections::HashMap;

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::auth::client_assertion::{self, OAuthError};
use crate::auth::remote::{self, RemoteDocuments};
use crate::auth::{TokenSigner, TokenVerifier, scopes};
use crate::store::clients;

/// Lifetime of an access token issued at the token endpoint, in seconds.
const ACCESS_TOKEN_TTL: i64 = 300;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The server root as clients see it: the FHIR base URL without its trailing `/fhir`.
fn root_url(state: &AppState) -> &str {
    state
        .base_url
        .strip_suffix("/fhir")
        .unwrap_or(&state.base_url)
}

fn token_url(state: &AppState) -> String {
    format!("{}/auth/token", root_url(state))
}

pub async fn jwks(verifier: web::Data<TokenVerifier>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"keys": verifier.jwks()}))
}

pub async fn smart_configuration(
    state: web::Data<AppState>,
    signer: web::Data<Option<TokenSigner>>,
) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "issuer": signer.as_ref().as_ref().map(TokenSigner::issuer),
        "jwks_uri": format!("{}/.well-known/jwks.json", root_url(&state)),
        "token_endpoint": token_url(&state),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"]
    }))
}

/// `POST /auth/token`: a form-encoded client-credentials grant.
pub async fn token(
    state: web::Data<AppState>,
    verifier: web::Data<TokenVerifier>,
    signer: web::Data<Option<TokenSigner>>,
    remote: web::Data<RemoteDocuments>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    let signer = signer
        .as_ref()
        .as_ref()
        .ok_or_else(|| OAuthError::new("server_error", "this server issues no tokens"))?;
    let form = parse_form(&body)?;
    let assertion = check_grant(&form)?;
    let scope = form
        .get("scope")
        .filter(|scope| !scope.trim().is_empty())
        .ok_or_else(|| OAuthError::invalid_request("scope is required"))?;
    let client = authenticate(&state, &remote, assertion, verifier.leeway()).await?;
    request
        .extensions_mut()
        .insert(crate::audit::AuditAgent(client.client_id.clone()));
    let granted = scopes::grant(scope, &client.scope).join(" ");
    if granted.is_empty() {
        return Err(OAuthError::new(
            "invalid_scope",
            "none of the requested scopes is allowed to this client",
        ));
    }
    let access_token = signer
        .sign(&client.client_id, &granted, None, ACCESS_TOKEN_TTL)
        .map_err(|_| OAuthError::new("server_error", "the access token could not be signed"))?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": ACCESS_TOKEN_TTL,
            "scope": granted
        })))
}

fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        OAuthError::invalid_request("the body must be application/x-www-form-urlencoded")
    })?;
    let mut form = HashMap::new();
    for (name, value) in pairs {
        if form.insert(name.clone(), value).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "{name} is given more than once"
            )));
        }
    }
    Ok(form)
}

/// The grant type and assertion type; returns the assertion.
fn check_grant(form: &HashMap<String, String>) -> Result<&str, OAuthError> {
    match form.get("grant_type").map(String::as_str) {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some("client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            ));
        }
    }
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err(OAuthError::invalid_request(format!(
            "client_assertion_type must be {JWT_BEARER}"
        )));
    }
    form.get("client_assertion")
        .map(String::as_str)
        .ok_or_else(|| OAuthError::invalid_request("client_assertion is required"))
}

/// The enabled registered client whose valid, unused assertion this is.
async fn authenticate(
    state: &AppState,
    remote: &RemoteDocuments,
    assertion: &str,
    leeway: i64,
) -> Result<clients::ClientRow, OAuthError> {
    let (header, client_id) = client_assertion::peek(assertion)?;
    let unknown = || OAuthError::invalid_client("unknown or disabled client");
    let client = clients::find(&state.pool, &client_id)
        .await
        .map_err(|_| OAuthError::new("server_error", "the client registry is unavailable"))?
        .filter(|client| client.enabled)
        .ok_or_else(unknown)?;
    let jwks = client_keys(&client, remote, header.kid.as_deref()).await?;
    let claims = client_assertion::verify(
        assertion,
        &header,
        &client.client_id,
        &jwks,
        &token_url(state),
        leeway,
    )?;
    let jti = claims.jti.unwrap_or_default();
    let expires = chrono::DateTime::from_timestamp(claims.exp + leeway, 0).unwrap_or_default();
    let fresh = clients::record_assertion(&state.pool, &client.client_id, &jti, expires)
        .await
        .map_err(|_| OAuthError::new("server_error", "the assertion could not be recorded"))?;
    if !fresh {
        return Err(OAuthError::invalid_client(
            "the client assertion's jti was used before",
        ));
    }
    Ok(client)
}

/// The client's JWK Set: the registered one, or the one at its URL (cached; fetched again
/// when the assertion names a `kid` the cached set lacks, as after a client's key rotation).
async fn client_keys(
    client: &clients::ClientRow,
    remote: &RemoteDocuments,
    kid: Option<&str>,
) -> Result<serde_json::Value, OAuthError> {
    match (&client.jwks, &client.jwks_url) {
        (Some(jwks), _) => Ok(jwks.clone()),
        (None, Some(url)) => remote
            .get(url, |jwks| remote::has_kid(jwks, kid))
            .await
            .map_err(|failure| {
                OAuthError::invalid_client(format!("the client's JWKS is unavailable: {failure}"))
            }),
        (None, None) => Err(OAuthError::invalid_client("the client has no keys")),
    }
}
