//! The bearer-token check in front of every admin route. The token is compared through SHA-256
//! digests, byte by byte without an early exit, so neither its length nor its content leaks
//! through timing; it is never logged or echoed.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::secret::Secret;

/// The expected token, kept as its digest.
#[derive(Clone)]
pub struct Token {
    digest: Arc<[u8; 32]>,
}

impl Token {
    pub fn new(token: &Secret) -> Self {
        Token {
            digest: Arc::new(Sha256::digest(token.expose().as_bytes()).into()),
        }
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        same_bytes(&digest, self.digest.as_ref())
    }
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only, not on where
/// they differ.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

pub async fn require_token(State(token): State<Token>, request: Request, next: Next) -> Response {
    match bearer(request.headers()) {
        Some(presented) if token.accepts(presented) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the admin token is wrong").into_response(),
        None => ApiError::unauthorized(
            "send the admin token (admin.token) as `Authorization: Bearer TOKEN`",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_accepted() {
        let token = Token::new(&Secret::new("0123456789abcdef01234567"));
        assert!(token.accepts(b"0123456789abcdef01234567"));
        assert!(!token.accepts(b"0123456789abcdef0123456"));
        assert!(!token.accepts(b"0123456789abcdef012345678"));
        assert!(!token.accepts(b""));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_required() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some(&b"abc"[..]));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
