//! Console sign-in sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (the token
//! itself is posted once, never put in a URL or a cookie), each with its own form token (CSRF)
//! that every state-changing form carries. Kept in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::{header, HeaderMap};
use rand::RngCore;

/// The cookie's name.
pub const COOKIE: &str = "switchboard_admin";
/// How long a session lasts (ms).
pub const LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;
/// Most sessions kept; signing in past it ends the oldest.
pub const MAX_SESSIONS: usize = 1_000;

#[derive(Debug, Clone)]
pub struct Session {
    /// The form token of this session.
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// A new session at `now_ms`: `(cookie value, session)`.
    pub fn create(&self, now_ms: i64) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            csrf: random_hex(),
            expires_ms: now_ms.saturating_add(LIFETIME_MS),
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| s.expires_ms > now_ms);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(id, _)| id.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session whose id the request's cookie carries.
    pub fn find(&self, headers: &HeaderMap, now_ms: i64) -> Option<(String, Session)> {
        let id = cookie(headers)?;
        let sessions = self.lock();
        let session = sessions.get(id).filter(|s| s.expires_ms > now_ms)?;
        Some((id.to_owned(), session.clone()))
    }

    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The session id of the request's `Cookie` header.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that stores session `id` (`secure`: only over HTTPS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME_MS / 1000,
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether `presented` is the session's form token (constant time).
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    crate::admin_api::same_bytes(session.csrf.as_bytes(), presented.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_ends() {
        let sessions = Sessions::default();
        let (id, session) = sessions.create(1_000);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(sessions.find(&headers, 2_000).unwrap().1.csrf, session.csrf);
        assert!(sessions.find(&headers, 1_000 + LIFETIME_MS).is_none());
        sessions.end(&id);
        assert!(sessions.find(&headers, 2_000).is_none());
        assert!(csrf_matches(&session, &session.csrf));
        assert!(!csrf_matches(&session, "x"));
    }
}
