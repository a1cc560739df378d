//! Requests to the JetStream API (`$JS.API.*`) as raw JSON, with patience for a server that is
//! starting or electing a leader, and its error replies as [`ApiError`].
//!
//! Raw JSON, not async-nats's typed calls, where the bus must keep fields it does not model
//! (a stream update keeps a 2.10+ server's `metadata` or `compression`) or must tell error codes
//! apart.

use std::time::Duration;

use async_nats::jetstream::{Context, ErrorCode};
use serde_json::Value;
use tokio::time::Instant;

use crate::Error;

/// The error of a JetStream API reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// The HTTP-like status: 400, 404, 500, 503...
    pub(crate) status: u64,
    /// JetStream's own error code.
    pub(crate) code: ErrorCode,
    /// The server's description.
    pub(crate) description: String,
}

impl ApiError {
    /// The error of `reply`, if it is an error reply.
    pub(crate) fn of(reply: &Value) -> Option<ApiError> {
        let e = reply.get("error")?;
        Some(ApiError {
            status: e.get("code").and_then(Value::as_u64).unwrap_or(0),
            code: ErrorCode(e.get("err_code").and_then(Value::as_u64).unwrap_or(0)),
            description: e
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
        })
    }

    /// Whether the server says to try again later (503: no leader, cluster busy, restarting).
    pub(crate) fn is_unavailable(&self) -> bool {
        self.status == 503
    }
}

/// Sends a JetStream API request (`subject` after `$JS.API.`), retrying while JetStream is not
/// answering or not ready (no responders, timeouts, 503) for up to `patience`. An error reply
/// other than 503 is returned as the reply, for the caller to read with [`ApiError::of`].
pub(crate) async fn request(
    js: &Context,
    subject: &str,
    body: &Value,
    patience: Duration,
) -> Result<Value, Error> {
    let deadline = Instant::now() + patience;
    // Several tries fit in the patience: a cluster electing a leader drops requests unanswered
    // for a few seconds, and a request sent then would wait out a long timeout.
    let per_try = (patience / 5).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut delay = Duration::from_millis(50);
    loop {
        let attempt = js.request::<_, _, Value>(subject.to_owned(), body);
        let last = match tokio::time::timeout(per_try, attempt).await {
            Ok(Ok(reply)) => match ApiError::of(&reply) {
                Some(e) if e.is_unavailable() => {
                    format!("JetStream is not ready: {}", e.description)
                }
                _ => return Ok(reply),
            },
            Ok(Err(e)) => format!("JetStream did not answer `$JS.API.{subject}`: {e}"),
            Err(_) => format!("JetStream did not answer `$JS.API.{subject}` within {per_try:?}"),
        };
        if Instant::now() + delay > deadline {
            return Err(Error::Backend {
                context: format!(
                    "{last} (for {patience:?}); check that nats-server runs with JetStream \
                     enabled (`-js`) and, in a cluster, that a quorum of servers is up"
                ),
                retryable: true,
                source: last.into(),
            });
        }
        tracing::debug!(subject, error = %last, "JetStream API request retried");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}
