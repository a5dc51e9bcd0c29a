//! `X-Webhook-Signature`: hex HMAC-SHA256 of the raw body. Kapso sends 64 lowercase hex digits;
//! uppercase is the same MAC and is accepted, and so is an optional `sha256=` prefix (which two
//! of Kapso's own receivers strip before comparing, so a sender may add it).
//! Only [`verify`] can produce a [`Verified`] value, so nothing downstream can skip the check.

use hmac::{Mac, SimpleHmac};
use sha2::Sha256;

use super::{RawDelivery, HEADER_SIGNATURE};
use crate::secret::Secret;

type HmacSha256 = SimpleHmac<Sha256>;

/// A value whose signature checked out. The field is private: the only way in is [`verify`].
#[derive(Debug)]
pub struct Verified<T>(T);

impl<T> Verified<T> {
    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Webhook-Signature header is missing")]
    Missing,
    #[error(
        "the X-Webhook-Signature header is not 64 hex characters (optionally after `sha256=`)"
    )]
    Malformed,
    #[error("the signature matches none of the webhook's secrets")]
    Mismatch,
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret`, as Kapso computes it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Verifies a delivery's `X-Webhook-Signature` against its raw body. The only way to get a
/// [`Verified`] delivery.
pub fn verify(
    raw: RawDelivery,
    secrets: &[Secret],
) -> Result<Verified<RawDelivery>, SignatureError> {
    let header = raw.headers.get(HEADER_SIGNATURE).map(|v| v.as_bytes());
    check(&raw.body, header, secrets)?;
    Ok(Verified(raw))
}

/// Checks `signature_header` against `body` with each secret (several while a secret is being
/// rotated). Comparison is constant time, and every secret is tried so the time taken does not
/// say which one matched.
pub fn check(
    body: &[u8],
    signature_header: Option<&[u8]>,
    secrets: &[Secret],
) -> Result<(), SignatureError> {
    let header = signature_header.ok_or(SignatureError::Missing)?;
    let header = strip_algorithm(trim_ascii(header));
    if header.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let mut expected = [0u8; 32];
    hex::decode_to_slice(header, &mut expected).map_err(|_| SignatureError::Malformed)?;

    let mut matched = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The digest without an optional `sha256=` prefix (any case).
fn strip_algorithm(header: &[u8]) -> &[u8] {
    const PREFIX: &[u8] = b"sha256=";
    match header.get(..PREFIX.len()) {
        Some(start) if start.eq_ignore_ascii_case(PREFIX) => &header[PREFIX.len()..],
        _ => header,
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    // CONTRACT.md §2.3 worked example.
    const SECRET: &str = "whsec_test_switchboard";
    const BODY: &str = r#"{"message":{"id":"wamid.TEST1","type":"text","text":{"body":"hi"}},"phone_number_id":"106540352242922"}"#;
    const SIGNATURE: &str = "d9b6316daadcbf428fe4f8958ad3107cd2f9823d08bc28eba891fdc8f5f12dcf";

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn contract_vector_signs_to_documented_digest() {
        assert_eq!(BODY.len(), 103);
        assert_eq!(sign(SECRET.as_bytes(), BODY.as_bytes()), SIGNATURE);
    }

    #[test]
    fn an_optional_sha256_prefix_is_accepted_and_nothing_else_is() {
        let ok = |header: String| {
            check(
                BODY.as_bytes(),
                Some(header.as_bytes()),
                &secrets(&[SECRET]),
            )
        };
        assert_eq!(ok(format!("sha256={SIGNATURE}")), Ok(()));
        assert_eq!(ok(format!("SHA256={SIGNATURE}")), Ok(()));
        assert_eq!(ok(format!("sha256={}", SIGNATURE.to_uppercase())), Ok(()));
        assert_eq!(
            ok(format!("sha1={SIGNATURE}")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            ok(format!("sha256=sha256={SIGNATURE}")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            ok(format!("sha256={}", &SIGNATURE[..63])),
            Err(SignatureError::Malformed)
        );
        let mut wrong = SIGNATURE.to_owned();
        wrong.replace_range(..1, "0");
        assert_eq!(ok(format!("sha256={wrong}")), Err(SignatureError::Mismatch));
    }

    #[test]
    fn contract_vector_verifies() {
        let ok = check(
            BODY.as_bytes(),
            Some(SIGNATURE.as_bytes()),
            &secrets(&[SECRET]),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn one_extra_byte_fails() {
        let body = format!("{BODY}\n");
        let result = check(
            body.as_bytes(),
            Some(SIGNATURE.as_bytes()),
            &secrets(&[SECRET]),
        );
        assert_eq!(result.unwrap_err(), SignatureError::Mismatch);
    }

    #[test]
    fn any_listed_secret_verifies_during_rotation() {
        let list = secrets(&["old-secret", SECRET]);
        assert!(check(BODY.as_bytes(), Some(SIGNATURE.as_bytes()), &list).is_ok());
    }

    #[test]
    fn missing_and_malformed_headers_fail() {
        let list = secrets(&[SECRET]);
        let check = |h: Option<&str>| {
            super::check(BODY.as_bytes(), h.map(str::as_bytes), &list).unwrap_err()
        };
        assert_eq!(check(None), SignatureError::Missing);
        assert_eq!(check(Some("abc")), SignatureError::Malformed);
        assert_eq!(check(Some(&"z".repeat(64))), SignatureError::Malformed);
        assert_eq!(
            check(Some(&format!("sha512={SIGNATURE}"))),
            SignatureError::Malformed
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = SIGNATURE.to_uppercase();
        let result = check(BODY.as_bytes(), Some(upper.as_bytes()), &secrets(&[SECRET]));
        assert!(result.is_ok());
    }
}
