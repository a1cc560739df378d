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
use crate::trace::Consumer;
use crate::{Delivery, ErrorClass, HandlerError};

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
    trace: Consumer,
}

impl Waiting {
    /// Drives the handler to the end, in its trace, with panics caught; past `limit` it is
    /// cancelled with a retryable [`ErrorClass::Timeout`] error.
    pub(crate) async fn finish(self, limit: Option<Duration>) -> Result<(), HandlerError> {
        let caught = AssertUnwindSafe(self.handler).catch_unwind();
        let run = self.trace.run(caught);
        let outcome = match limit {
            None => run.await,
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(outcome) => outcome,
                Err(_) => Ok(Err(HandlerError::new(
                    ErrorClass::Timeout,
                    format!(
                        "the delivery did not finish within {limit:?} \
                         (`consumer.handler_timeout`) and was cancelled"
                    ),
                ))),
            },
        };
        let outcome = outcome.unwrap_or_else(|panic| Err(panic_error(&*panic)));
        self.trace.finish(std::slice::from_ref(&outcome));
        outcome
    }
}

/// Starts the pipeline on a delivery and polls it once, in the delivery's trace (with
/// `trace_context`: see [`crate::trace`]), with panics caught. The handler's future goes in `slot`, whose allocation
/// the next delivery reuses when this one finishes here; one that waits takes the slot's
/// future with it.
pub(crate) async fn first_poll(
    pipeline: &Pipeline,
    payload: &Bytes,
    delivery: Delivery,
    slot: &mut HandlerSlot,
    trace_context: bool,
) -> FirstPoll {
    let mut trace = if trace_context {
        Consumer::of(&delivery, payload.len())
    } else {
        Consumer::none()
    };
    let mut delivery = Some(delivery);
    std::future::poll_fn(|cx| {
        let delivery = delivery.take().expect("a ready poll_fn is polled once");
        let first = trace.run_sync(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                pipeline.start(payload, delivery, slot);
                slot.poll(cx)
            }))
        });
        let outcome = match first {
            Ok(Poll::Ready(outcome)) => outcome,
            Ok(Poll::Pending) => {
                return Poll::Ready(FirstPoll::Waiting(Waiting {
                    handler: std::mem::replace(slot, idle_slot()),
                    trace: std::mem::replace(&mut trace, Consumer::none()),
                }));
            }
            Err(panic) => {
                // What the panic left in the slot is not polled again.
                *slot = idle_slot();
                Err(panic_error(&*panic))
            }
        };
        trace.finish(std::slice::from_ref(&outcome));
        Poll::Ready(FirstPoll::Finished(outcome))
    })
    .await
}

/// An empty slot (a future of size zero needs no allocation).
pub(crate) fn idle_slot() -> HandlerSlot {
    HandlerSlot::new(std::future::pending())
}

/// Calls a batch handler over `n` messages, in `trace` and with panics caught: the handler's
/// synchronous part (decoding, a closure's code before its `async` block) runs here. A panic
/// there is the outcome of each message.
pub(crate) fn call_batch(
    trace: &Consumer,
    n: usize,
    call: impl FnOnce() -> crate::handler::BatchFuture,
) -> crate::handler::BatchFuture {
    trace
        .run_sync(|| std::panic::catch_unwind(AssertUnwindSafe(call)))
        .unwrap_or_else(|panic| {
            let outcomes = each(n, &panic_error(&*panic));
            Box::pin(std::future::ready(outcomes))
        })
}

/// `error` as the outcome of each of `n` messages.
fn each(n: usize, error: &HandlerError) -> Vec<Result<(), HandlerError>> {
    let (class, message) = (error.class(), error.message());
    (0..n)
        .map(|_| Err(HandlerError::new(class, message.clone())))
        .collect()
}

/// Runs a batch handler's future to the end, in `trace`, with panics caught and past `limit`
/// cancelled; a failure of the whole run is the outcome of each of its `n` messages.
pub(crate) async fn run_batch(
    handler: crate::handler::BatchFuture,
    n: usize,
    limit: Option<Duration>,
    trace: Consumer,
) -> Vec<Result<(), HandlerError>> {
    let outcomes = run_batch_in(&trace, handler, n, limit).await;
    trace.finish(&outcomes);
    outcomes
}

async fn run_batch_in(
    trace: &Consumer,
    handler: crate::handler::BatchFuture,
    n: usize,
    limit: Option<Duration>,
) -> Vec<Result<(), HandlerError>> {
    let caught = trace.run(AssertUnwindSafe(handler).catch_unwind());
    let all = |error: HandlerError| each(n, &error);
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
