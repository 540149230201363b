//! ES256 key files: creation (`keygen`) and loading.

use std::fs;
use std::path::Path;

use anyhow::Context;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

/// Creates a P-256 key pair as PKCS#8 / SPKI PEM files unless the private key already exists.
/// Returns whether new keys were written.
pub fn generate_if_missing(private_path: &Path, public_path: &Path) -> anyhow::Result<bool> {
    if private_path.exists() {
        if !public_path.exists() {
            let private = fs::read_to_string(private_path)?;
            write_public_key(&signing_key_from_pem(&private)?, public_path)?;
        }
        return Ok(false);
    }
    let signing_key = SigningKey::random(&mut rand_core::OsRng);
    let private_pem = signing_key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the private key")?;
    for path in [private_path, public_path] {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
    }
    write_private(private_path, private_pem.as_bytes())?;
    write_public_key(&signing_key, public_path)?;
    Ok(true)
}

fn signing_key_from_pem(pem: &str) -> anyhow::Result<SigningKey> {
    use p256::pkcs8::DecodePrivateKey;
    SigningKey::from_pkcs8_pem(pem).context("the private key file is not a PKCS#8 P-256 key")
}

fn write_public_key(signing_key: &SigningKey, path: &Path) -> anyhow::Result<()> {
    let public_pem = signing_key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    fs::write(path, public_pem).with_context(|| format!("writing {}", path.display()))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn read_key_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| {
        format!(
            "reading the {what} at {} (run `ketamine-fhir keygen` to create a local key pair)",
            path.display()
        )
    })
}

/// The server's public key as a JWK (`kty` EC, `crv` P-256, `x`, `y`, `kid`, `alg` ES256,
/// `use` sig), read from an SPKI PEM file; `kid` is its RFC 7638 thumbprint.
pub fn public_jwk(pem: &[u8]) -> anyhow::Result<serde_json::Value> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let text = std::str::from_utf8(pem).context("the public key file is not text")?;
    let key = p256::PublicKey::from_public_key_pem(text)
        .context("the public key file is not an SPKI P-256 key")?;
    let point = key.to_encoded_point(false);
    let (x, y) = match (point.x(), point.y()) {
        (Some(x), Some(y)) => (base64url(x), base64url(y)),
        _ => anyhow::bail!("the public key is the identity point"),
    };
    let kid = thumbprint(&x, &y);
    Ok(serde_json::json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"
    }))
}

/// The RFC 7638 SHA-256 thumbprint of a P-256 key: its required members in lexical order.
fn thumbprint(x: &str, y: &str) -> String {
    use sha2::Digest;
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    base64url(&sha2::Sha256::digest(canonical.as_bytes()))
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The `kid` of the public key derived from a PKCS#8 private key PEM.
pub fn kid_of_private_key(pem: &[u8]) -> anyhow::Result<String> {
    use p256::pkcs8::EncodePublicKey;
    let text = std::str::from_utf8(pem).context("the private key file is not text")?;
    let public = signing_key_from_pem(text)?
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    let jwk = public_jwk(public.as_bytes())?;
    Ok(jwk["kid"].as_str().unwrap_or_default().to_string())
}

/// The key of a JWK Set (`{"keys": [...]}`) named by `kid`, if one parses as a JWK.
pub fn jwk_by_kid(jwks: &serde_json::Value, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|key| key["kid"].as_str() == Some(kid))
        .find_map(|key| serde_json::from_value(key.clone()).ok())
}
