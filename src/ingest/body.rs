//! Reading a delivery's body within two limits: at most `server.body_limit_bytes` for one request,
//! and at most `server.body_memory_bytes` buffered by all requests together. Memory is counted as
//! it is actually allocated (a client that declares a large `Content-Length` and sends little
//! holds little), and is given back when the request ends. A request that would take the server
//! past the shared budget is refused at once with 503, so slow or abandoned bodies (each bounded
//! by `server.body_timeout_ms`) cannot pin more than the budget, however many connections send
//! them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::BodyExt;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::http_server::BodyTimeout;

/// Smallest buffer allocated for a body whose length was not declared.
const FIRST_BUFFER: usize = 8 * 1024;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error(
        "the server is buffering as many request bodies as it may ({budget} bytes); retry later"
    )]
    BudgetExhausted { budget: usize },
    #[error("the request body was not received in time")]
    TooSlow,
    #[error("the request body could not be read")]
    Unreadable,
}

/// The per-request and shared limits on buffered bodies. Clones share one budget.
#[derive(Clone)]
pub struct BodyLimits {
    per_request: usize,
    budget: usize,
    available: Arc<Semaphore>,
    /// Bytes held, for `/metrics`.
    held: Gauge,
}

/// Budget held by one body being read or handled; given back when dropped.
pub struct BodyMemory {
    permit: Option<OwnedSemaphorePermit>,
    held: Gauge,
}

impl Drop for BodyMemory {
    fn drop(&mut self) {
        if let Some(permit) = &self.permit {
            self.held.dec_by(permit.num_permits() as i64);
        }
    }
}

impl BodyLimits {
    /// `per_request` bytes for one body, `budget` bytes for all bodies together (at least
    /// `per_request`; at most `u32::MAX`, checked by config validation); `held` shows the bytes
    /// held at any moment.
    pub fn new(per_request: usize, budget: usize, held: Gauge) -> BodyLimits {
        let budget = budget.max(per_request);
        BodyLimits {
            per_request,
            budget,
            available: Arc::new(Semaphore::new(budget)),
            held,
        }
    }

    /// Bytes currently held by bodies.
    pub fn buffered(&self) -> usize {
        self.budget - self.available.available_permits()
    }

    /// Reads the whole body, refusing more than the per-request limit (early, by
    /// `Content-Length`, when sent) and anything that would exceed the shared budget.
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, BodyMemory), BodyError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.per_request as u64) {
            return Err(BodyError::TooLarge {
                limit: self.per_request,
            });
        }
        let declared = declared.and_then(|len| usize::try_from(len).ok());
        let mut memory = BodyMemory {
            permit: None,
            held: self.held.clone(),
        };
        let mut buffer: Vec<u8> = Vec::new();
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| read_error(&err))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let needed = buffer.len() + data.len();
            if needed > self.per_request {
                return Err(BodyError::TooLarge {
                    limit: self.per_request,
                });
            }
            if needed > buffer.capacity() {
                let capacity = next_capacity(buffer.capacity(), needed, declared);
                self.hold(&mut memory, capacity)?;
                buffer.reserve_exact(capacity - buffer.len());
            }
            buffer.extend_from_slice(&data);
        }
        Ok((Bytes::from(buffer), memory))
    }

    /// Grows `memory` to `bytes` in all, or refuses if the budget has not that much left.
    fn hold(&self, memory: &mut BodyMemory, bytes: usize) -> Result<(), BodyError> {
        let held = memory.permit.as_ref().map_or(0, |p| p.num_permits());
        let extra = bytes.saturating_sub(held);
        if extra == 0 {
            return Ok(());
        }
        let exhausted = || BodyError::BudgetExhausted {
            budget: self.budget,
        };
        let extra = u32::try_from(extra).map_err(|_| exhausted())?;
        let more = self
            .available
            .clone()
            .try_acquire_many_owned(extra)
            .map_err(|_| exhausted())?;
        match &mut memory.permit {
            Some(permit) => permit.merge(more),
            None => memory.permit = Some(more),
        }
        self.held.inc_by(i64::from(extra));
        Ok(())
    }
}

/// The capacity to grow a buffer of `current` bytes to so that it holds `needed`: doubling (so a
/// body arriving in many small frames is copied a few times only), but never past a declared
/// length the body keeps to.
fn next_capacity(current: usize, needed: usize, declared: Option<usize>) -> usize {
    let doubled = current.saturating_mul(2).max(needed).max(FIRST_BUFFER);
    match declared {
        Some(declared) if declared >= needed => doubled.min(declared),
        _ => doubled,
    }
}

/// A body that ended with an error: too slow (the body timeout) or cut off.
fn read_error(err: &axum::Error) -> BodyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause.is::<BodyTimeout>() {
            return BodyError::TooSlow;
        }
        source = cause.source();
    }
    BodyError::Unreadable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(length: Option<usize>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(length) = length {
            headers.insert(header::CONTENT_LENGTH, length.into());
        }
        headers
    }

    #[tokio::test]
    async fn a_body_is_read_whole_and_its_memory_given_back_when_dropped() {
        let limits = BodyLimits::new(1024, 4096, Gauge::default());
        let (bytes, memory) = limits
            .read(&headers(Some(5)), Body::from("hello"))
            .await
            .expect("read");
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(
            limits.buffered(),
            5,
            "a declared length is allocated exactly"
        );
        assert_eq!(limits.held.get(), 5);
        drop(memory);
        assert_eq!(limits.buffered(), 0);
        assert_eq!(limits.held.get(), 0);
    }

    #[tokio::test]
    async fn bodies_past_the_shared_budget_are_refused_until_memory_is_given_back() {
        let limits = BodyLimits::new(3000, 4000, Gauge::default());
        let body = "x".repeat(3000);
        let (_, first) = limits
            .read(&headers(Some(3000)), Body::from(body.clone()))
            .await
            .expect("first fits");
        let second = limits
            .read(&headers(Some(3000)), Body::from(body.clone()))
            .await;
        assert!(
            matches!(second, Err(BodyError::BudgetExhausted { budget: 4000 })),
            "{:?}",
            second.err()
        );
        drop(first);
        assert!(limits
            .read(&headers(Some(3000)), Body::from(body))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_or_without_a_declared_length() {
        let limits = BodyLimits::new(10, 4096, Gauge::default());
        let declared = limits
            .read(&headers(Some(11)), Body::from("x".repeat(11)))
            .await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 10 })));
        let undeclared = limits
            .read(&headers(None), Body::from("x".repeat(11)))
            .await;
        assert!(matches!(undeclared, Err(BodyError::TooLarge { limit: 10 })));
        assert_eq!(limits.buffered(), 0, "refused bodies hold nothing");
    }

    #[test]
    fn buffers_double_but_stop_at_the_declared_length() {
        assert_eq!(next_capacity(0, 100, None), FIRST_BUFFER);
        assert_eq!(next_capacity(0, 100, Some(300)), 300);
        assert_eq!(next_capacity(16_384, 16_385, None), 32_768);
        assert_eq!(next_capacity(16_384, 16_385, Some(20_000)), 20_000);
        // A body longer than it declared grows past the declaration (and is counted).
        assert_eq!(next_capacity(300, 301, Some(300)), 600.max(FIRST_BUFFER));
    }
}
