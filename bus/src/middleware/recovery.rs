use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use super::{Middleware, Next};
use crate::handler::HandlerFuture;
use crate::{ErrorClass, HandlerError, RawMessage};

/// Turns a panic in the rest of the chain into a permanent [`ErrorClass::Panic`] error that
/// carries the panic message, so outer middleware (logging, metrics) see it as a failure.
///
/// Without it the backend still catches the panic and dead-letters the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery;

impl Middleware for Recovery {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        let fut = next.run(msg);
        Box::pin(async move {
            AssertUnwindSafe(fut)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(panic_error(&*panic)))
        })
    }
}

/// The message of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic with a non-string payload")
}

pub(crate) fn panic_error(payload: &(dyn Any + Send)) -> HandlerError {
    HandlerError::new(
        ErrorClass::Panic,
        format!("handler panicked: {}", panic_message(payload)),
    )
}
