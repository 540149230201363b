//! Standard Webhooks signatures (HMAC-SHA256, `whsec_` secrets): signing deliveries and verifying them.
//!
//! See <https://www.standardwebhooks.com/>: the signed content is `{msg_id}.{timestamp}.{body}`,
//! a signature is `v1,<base64 of the MAC>`, and the `webhook-signature` header holds one or more
//! signatures separated by spaces so that old and new secrets can both sign during a rotation.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &str = "v1";
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;
const GENERATED_KEY_BYTES: usize = 32;

/// A symmetric signing key. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret must start with \"{SECRET_PREFIX}\"")]
    MissingPrefix,
    #[error("a webhook secret must be standard base64 after \"{SECRET_PREFIX}\"")]
    InvalidBase64,
    #[error(
        "a webhook secret must decode to {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, this one has {0}"
    )]
    InvalidLength(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the webhook-timestamp header is not an integer number of seconds")]
    InvalidTimestamp,
    #[error("the webhook-timestamp is outside the allowed tolerance")]
    TimestampOutOfTolerance,
    #[error("the webhook-signature header holds no v1 signature")]
    NoSignatures,
    #[error("no signature matches")]
    NoMatchingSignature,
}

impl WebhookSecret {
    /// Parses the `whsec_<base64>` form shown to partners.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::InvalidBase64)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::InvalidLength(key.len()));
        }
        Ok(Self { key })
    }

    /// A fresh random 32-byte key from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = vec![0u8; GENERATED_KEY_BYTES];
        OsRng.fill_bytes(&mut key);
        Self { key }
    }

    pub fn to_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac_over(&self, message_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// One signature, `v1,<base64>`, over `{message_id}.{timestamp}.{body}`.
pub fn signature(secret: &WebhookSecret, message_id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret
        .mac_over(message_id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header value: one signature per secret, separated by spaces.
pub fn signature_header(
    secrets: &[&WebhookSecret],
    message_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|secret| signature(secret, message_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a receiver does: checks the timestamp is fresh and that some `v1` signature in the
/// header was made by one of `secrets`, comparing in constant time.
pub fn verify(
    secrets: &[&WebhookSecret],
    message_id: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_seconds: i64,
) -> Result<(), VerifyError> {
    let timestamp = parse_timestamp(timestamp_header)?;
    if now_unix.abs_diff(timestamp) > tolerance_seconds.unsigned_abs() {
        return Err(VerifyError::TimestampOutOfTolerance);
    }
    let candidates = v1_signatures(signature_header);
    if candidates.is_empty() {
        return Err(VerifyError::NoSignatures);
    }
    // Sign the timestamp exactly as received, so a header like "+123" cannot verify as "123".
    let timestamp_text = timestamp_header.trim();
    let matches = |secret: &&WebhookSecret| {
        candidates.iter().any(|tag| {
            secret
                .mac_over(message_id, timestamp_text, body)
                .verify_slice(tag)
                .is_ok()
        })
    };
    if secrets.iter().any(matches) {
        Ok(())
    } else {
        Err(VerifyError::NoMatchingSignature)
    }
}

fn parse_timestamp(header: &str) -> Result<i64, VerifyError> {
    let text = header.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::InvalidTimestamp);
    }
    text.parse().map_err(|_| VerifyError::InvalidTimestamp)
}

/// The decoded MACs of the header's `v1` entries; other versions and malformed entries are
/// skipped, as the specification lets a header carry signatures a receiver does not understand.
fn v1_signatures(header: &str) -> Vec<Vec<u8>> {
    header
        .split_whitespace()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == SIGNATURE_VERSION)
        .filter_map(|(_, encoded)| STANDARD.decode(encoded).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const TOLERANCE: i64 = 300;

    fn vector_secret() -> WebhookSecret {
        WebhookSecret::parse(VECTOR_SECRET).unwrap()
    }

    fn verify_vector(
        secrets: &[&WebhookSecret],
        header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        verify(
            secrets,
            VECTOR_ID,
            &VECTOR_TIMESTAMP.to_string(),
            header,
            body,
            now,
            TOLERANCE,
        )
    }

    #[test]
    fn reproduces_the_standard_webhooks_test_vector() {
        let secret = vector_secret();
        assert_eq!(
            signature(&secret, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn verifies_the_test_vector() {
        let secret = vector_secret();
        assert_eq!(
            verify_vector(&[&secret], VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn rotation_header_verifies_with_either_secret() {
        let old = vector_secret();
        let new = WebhookSecret::generate();
        let header = signature_header(&[&old, &new], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.starts_with(VECTOR_SIGNATURE));
        for secret in [&old, &new] {
            assert_eq!(
                verify_vector(&[secret], &header, VECTOR_BODY, VECTOR_TIMESTAMP),
                Ok(())
            );
        }
    }

    #[test]
    fn tampered_body_fails() {
        let secret = vector_secret();
        let result = verify_vector(
            &[&secret],
            VECTOR_SIGNATURE,
            br#"{"test": 2432232315}"#,
            VECTOR_TIMESTAMP,
        );
        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn wrong_secret_fails() {
        let other = WebhookSecret::generate();
        let result = verify_vector(&[&other], VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TIMESTAMP);
        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn stale_or_future_timestamp_fails() {
        let secret = vector_secret();
        for now in [
            VECTOR_TIMESTAMP + TOLERANCE + 1,
            VECTOR_TIMESTAMP - TOLERANCE - 1,
        ] {
            let result = verify_vector(&[&secret], VECTOR_SIGNATURE, VECTOR_BODY, now);
            assert_eq!(result, Err(VerifyError::TimestampOutOfTolerance));
        }
        let at_the_edge = VECTOR_TIMESTAMP + TOLERANCE;
        assert_eq!(
            verify_vector(&[&secret], VECTOR_SIGNATURE, VECTOR_BODY, at_the_edge),
            Ok(())
        );
    }

    #[test]
    fn malformed_timestamp_fails() {
        let secret = vector_secret();
        for header in ["", "abc", "+1614265330", "-5", "1614265330.5"] {
            let result = verify(
                &[&secret],
                VECTOR_ID,
                header,
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                VECTOR_TIMESTAMP,
                TOLERANCE,
            );
            assert_eq!(result, Err(VerifyError::InvalidTimestamp), "{header:?}");
        }
    }

    #[test]
    fn header_without_v1_signatures_fails() {
        let secret = vector_secret();
        for header in ["", "v1a,abcd", "v2,g0hM9SsE", "v1,not*base64"] {
            let result = verify_vector(&[&secret], header, VECTOR_BODY, VECTOR_TIMESTAMP);
            assert_eq!(result, Err(VerifyError::NoSignatures), "{header:?}");
        }
    }

    #[test]
    fn unknown_entries_beside_a_valid_signature_are_ignored() {
        let secret = vector_secret();
        let header = format!("v1a,hnO3f9T8 {VECTOR_SIGNATURE}");
        assert_eq!(
            verify_vector(&[&secret], &header, VECTOR_BODY, VECTOR_TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn parse_refuses_a_secret_without_prefix() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
    }

    #[test]
    fn parse_refuses_bad_base64() {
        assert_eq!(
            WebhookSecret::parse("whsec_not*valid*base64!!"),
            Err(SecretError::InvalidBase64)
        );
    }

    #[test]
    fn parse_refuses_keys_too_short_or_too_long() {
        let short = format!("whsec_{}", STANDARD.encode([7u8; 23]));
        assert_eq!(
            WebhookSecret::parse(&short),
            Err(SecretError::InvalidLength(23))
        );
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(
            WebhookSecret::parse(&long),
            Err(SecretError::InvalidLength(65))
        );
        let longest = format!("whsec_{}", STANDARD.encode([7u8; 64]));
        assert!(WebhookSecret::parse(&longest).is_ok());
    }

    #[test]
    fn generated_secret_round_trips_through_text() {
        let secret = WebhookSecret::generate();
        let text = secret.to_text();
        assert!(text.starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(&text), Ok(secret.clone()));
        assert_eq!(secret.key.len(), 32);
        assert_ne!(WebhookSecret::generate(), secret);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = vector_secret();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "WebhookSecret(..)");
        assert!(!shown.contains("MfKQ"));
    }
}
