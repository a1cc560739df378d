//! Running a handler's pipeline: the first poll happens in place, inside the delivery's trace and
//! with panics caught; only a handler still waiting after it becomes a future of its own.
//!
//! Most handlers finish at their first poll (they do not wait for anything), so this saves a
//! boxed future per delivery.

use std::panic::AssertUnwindSafe;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;

use bytes::Bytes;

use crate::handler::HandlerSlot;
use crate::middleware::{Pipeline, panic_error};
use crate::trace::{self, TraceParent};
use crate::{Delivery, ErrorClass, HandlerError, headers};

/// A handler after its first poll.
pub(crate) enum FirstPoll {
    /// It finished.
    Finished(Result<(), HandlerError>),
    /// It is waiting for something; [`Waiting::finish`] drives it to the end.
    Waiting(Waiting),
}

/// A handler that did not finish at its first poll.
pub(crate) struct Waiting {
    handler: HandlerSlot,
    parent: Option<TraceParent>,
}

impl Waiting {
    /// Drives the handler to the end, in its trace, with panics caught; past `limit` it is
    /// cancelled with a retryable [`ErrorClass::Timeout`] error.
    pub(crate) async fn finish(self, limit: Option<Duration>) -> Result<(), HandlerError> {
        let caught = AssertUnwindSafe(self.handler).catch_unwind();
        let run = trace::within(self.parent, caught);
        let outcome = match limit {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(HandlerError::new(
                        ErrorClass::Timeout,
                        format!(
                            "the delivery did not finish within {limit:?} \
                             (`consumer.handler_timeout`) and was cancelled"
                        ),
                    ));
                }
            },
        };
        outcome.unwrap_or_else(|panic| Err(panic_error(&*panic)))
    }
}

/// Starts the pipeline on a delivery and polls it once, in the delivery's trace (with
/// `trace_context`), with panics caught. The handler's future goes in `slot`, whose allocation
/// the next delivery reuses when this one finishes here; one that waits takes the slot's
/// future with it.
pub(crate) async fn first_poll(
    pipeline: &Pipeline,
    payload: &Bytes,
    delivery: Delivery,
    slot: &mut HandlerSlot,
    trace_context: bool,
) -> FirstPoll {
    let parent = trace_context
        .then(|| delivery.headers().get(headers::TRACEPARENT))
        .flatten()
        .and_then(TraceParent::parse);
    let mut delivery = Some(delivery);
    std::future::poll_fn(|cx| {
        let delivery = delivery.take().expect("a ready poll_fn is polled once");
        let first = trace::sync_within(parent, || {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                pipeline.start(payload, delivery, slot);
                slot.poll(cx)
            }))
        });
        Poll::Ready(match first {
            Ok(Poll::Ready(outcome)) => FirstPoll::Finished(outcome),
            Ok(Poll::Pending) => FirstPoll::Waiting(Waiting {
                handler: std::mem::replace(slot, idle_slot()),
                parent,
            }),
            Err(panic) => {
                // What the panic left in the slot is not polled again.
                *slot = idle_slot();
                FirstPoll::Finished(Err(panic_error(&*panic)))
            }
        })
    })
    .await
}

/// An empty slot (a future of size zero needs no allocation).
pub(crate) fn idle_slot() -> HandlerSlot {
    HandlerSlot::new(std::future::pending())
}

/// Runs a batch handler's future to the end, with panics caught and past `limit` cancelled;
/// a failure of the whole run is the outcome of each of its `n` messages.
pub(crate) async fn run_batch(
    handler: crate::handler::BatchFuture,
    n: usize,
    limit: Option<Duration>,
) -> Vec<Result<(), HandlerError>> {
    let caught = AssertUnwindSafe(handler).catch_unwind();
    let all = |error: HandlerError| {
        let (class, message) = (error.class(), error.message());
        (0..n)
            .map(|_| Err(HandlerError::new(class, message.clone())))
            .collect()
    };
    let outcome = match limit {
        None => caught.await,
        Some(limit) => match tokio::time::timeout(limit, caught).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return all(HandlerError::new(
                    ErrorClass::Timeout,
                    format!(
                        "the batch did not finish within {limit:?} (`consumer.handler_timeout`) \
                         and was cancelled"
                    ),
                ));
            }
        },
    };
    outcome.unwrap_or_else(|panic| all(panic_error(&*panic)))
}
