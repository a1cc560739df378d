use std::time::Duration;

use super::{Middleware, Next};
use crate::handler::HandlerFuture;
use crate::{ErrorClass, HandlerError, RawMessage};

/// Fails the delivery with a retryable [`ErrorClass::Timeout`] error when the rest of the chain
/// takes longer than the limit. The handler future is dropped at that moment, so the handler
/// stops at its next `.await` and its destructors run.
///
/// ```
/// use bus::middleware::Timeout;
/// let timeout = Timeout::new(std::time::Duration::from_secs(30));
/// # let _ = timeout;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    limit: Duration,
}

impl Timeout {
    /// A timeout of `limit`.
    pub fn new(limit: Duration) -> Self {
        Timeout { limit }
    }
}

impl Middleware for Timeout {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        let limit = self.limit;
        let fut = next.run(msg);
        Box::pin(async move {
            match tokio::time::timeout(limit, fut).await {
                Ok(outcome) => outcome,
                Err(_) => Err(HandlerError::new(
                    ErrorClass::Timeout,
                    format!("handler did not finish within {limit:?} and was cancelled"),
                )),
            }
        })
    }
}
