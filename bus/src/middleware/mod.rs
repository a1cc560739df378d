//! Middleware around handlers, and the standard ones.
//!
//! A subscription's middleware forms a chain: **the first one added is the outermost**. It sees
//! the message first and the outcome last. For the recommended set, in the recommended order:
//!
//! | order | middleware | does |
//! |---|---|---|
//! | 1 | [`Retry`] | re-runs the rest of the chain in-process on retryable errors, with exponential backoff and jitter |
//! | 2 | [`Timeout`] | drops the handler future when time is up; a timeout is retryable |
//! | 3 | [`Recovery`] | turns a panic into a permanent error carrying the panic message |
//! | 4 | [`Logging`] | one `tracing` span per delivery (topic, event type, event id, attempt, group), outcome and duration |
//! | 5 | [`Metrics`] | outcome counter and duration histogram by topic and group, through the `metrics` facade |
//! | 6 | [`ErrorHandler`] | maps or swallows an error |
//!
//! So each retry attempt gets its own timeout, a panic is logged and counted as an error, and
//! the error handler sees the handler's own error. The backend catches panics that reach it
//! anyway (a panic is always dead-lettered, with or without [`Recovery`]).
//!
//! Custom middleware is a type implementing [`Middleware`] or a plain async function through
//! [`from_fn`]:
//!
//! ```
//! use bus::middleware::{from_fn, Next};
//! use bus::RawMessage;
//!
//! let reject_empty = from_fn(|msg: RawMessage, next: Next| async move {
//!     if msg.payload.is_empty() {
//!         return Err(bus::HandlerError::permanent("empty payload"));
//!     }
//!     next.run(msg).await
//! });
//! # let _ = reject_empty;
//! ```

mod error_handler;
mod logging;
mod metrics;
mod recovery;
mod retry;
mod timeout;

use std::future::Future;
use std::sync::Arc;

pub use self::error_handler::ErrorHandler;
pub use self::logging::Logging;
pub use self::metrics::{HANDLER_DURATION, HANDLER_TOTAL, Metrics};
pub(crate) use self::recovery::panic_error;
pub use self::recovery::{Recovery, panic_message};
pub use self::retry::Retry;
pub use self::timeout::Timeout;

use crate::handler::{Handler, HandlerFuture};
use crate::{HandlerError, RawMessage};

/// A layer around a handler: gets the message and the rest of the chain.
pub trait Middleware: Send + Sync + 'static {
    /// Handles one delivery, usually by calling `next.run(msg)` once or more.
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture;
}

/// The rest of the middleware chain, ending in the handler. Cheap to clone, so a middleware can
/// run it more than once (as [`Retry`] does).
#[derive(Clone)]
pub struct Next {
    chain: Arc<Chain>,
    index: usize,
}

impl Next {
    /// Runs the rest of the chain on `msg`.
    pub fn run(self, msg: RawMessage) -> HandlerFuture {
        match self.chain.layers.get(self.index) {
            Some(layer) => {
                let next = Next {
                    chain: Arc::clone(&self.chain),
                    index: self.index + 1,
                };
                layer.handle(msg, next)
            }
            None => self.chain.handler.call(msg),
        }
    }
}

struct Chain {
    layers: Vec<Box<dyn Middleware>>,
    handler: Arc<dyn Handler>,
}

/// A handler with its middleware, as the backends run it.
#[derive(Clone)]
pub(crate) struct Pipeline(Arc<Chain>);

impl Pipeline {
    pub(crate) fn new(layers: Vec<Box<dyn Middleware>>, handler: Arc<dyn Handler>) -> Self {
        Pipeline(Arc::new(Chain { layers, handler }))
    }

    /// Starts the pipeline on a delivery, its future in `slot`; without middleware the handler
    /// decodes from the borrowed payload (see [`Handler::start`]).
    pub(crate) fn start(
        &self,
        payload: &bytes::Bytes,
        delivery: crate::Delivery,
        slot: &mut crate::handler::HandlerSlot,
    ) {
        if self.0.layers.is_empty() {
            self.0.handler.start(payload, delivery, slot);
        } else {
            slot.set(self.run(RawMessage {
                payload: payload.clone(),
                delivery,
            }));
        }
    }

    pub(crate) fn run(&self, msg: RawMessage) -> HandlerFuture {
        if self.0.layers.is_empty() {
            return self.0.handler.call(msg);
        }
        Next {
            chain: Arc::clone(&self.0),
            index: 0,
        }
        .run(msg)
    }
}

/// Middleware from an async function `(RawMessage, Next) -> Result<(), HandlerError>`.
pub fn from_fn<F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(RawMessage, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    FromFn(f)
}

/// Middleware made by [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F>(F);

impl<F, Fut> Middleware for FromFn<F>
where
    F: Fn(RawMessage, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        Box::pin((self.0)(msg, next))
    }
}

impl<M: Middleware + ?Sized> Middleware for Box<M> {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        (**self).handle(msg, next)
    }
}

impl<M: Middleware + ?Sized> Middleware for Arc<M> {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        (**self).handle(msg, next)
    }
}
