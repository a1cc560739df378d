use std::sync::Arc;

use super::{Middleware, Next};
use crate::handler::HandlerFuture;
use crate::{Delivery, HandlerError, RawMessage};

/// Maps or swallows the error of the rest of the chain: return `Ok(())` to acknowledge the
/// message anyway, or another error to change its class.
///
/// ```
/// use bus::middleware::ErrorHandler;
/// use bus::{Delivery, ErrorClass, HandlerError};
///
/// // Give up on anything that is not a timeout: dead-letter it at once.
/// let handler = ErrorHandler::new(|err: HandlerError, _delivery: &Delivery| {
///     if err.class() == ErrorClass::Timeout {
///         Err(err)
///     } else {
///         Err(HandlerError::permanent(err.into_source()))
///     }
/// });
/// # let _ = handler;
/// ```
#[derive(Clone)]
pub struct ErrorHandler {
    f: Arc<MapError>,
}

type MapError = dyn Fn(HandlerError, &Delivery) -> Result<(), HandlerError> + Send + Sync;

impl ErrorHandler {
    /// An error handler from a function.
    pub fn new<F>(f: F) -> Self
    where
        F: Fn(HandlerError, &Delivery) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        ErrorHandler { f: Arc::new(f) }
    }
}

impl std::fmt::Debug for ErrorHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorHandler")
    }
}

impl Middleware for ErrorHandler {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        let f = Arc::clone(&self.f);
        let delivery = msg.delivery.clone();
        let fut = next.run(msg);
        Box::pin(async move {
            match fut.await {
                Ok(()) => Ok(()),
                Err(e) => f(e, &delivery),
            }
        })
    }
}
