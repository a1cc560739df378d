//! Delivery logic shared by the backends: resolving a subscription's settings, running the
//! pipeline with panics caught, and deciding between ack, redelivery and dead letter.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;

use crate::message::{check_name, check_value};
use crate::middleware::{Pipeline, panic_error};
use crate::trace::{self, TraceParent};
use crate::{
    Delivery, EventBusConfig, HandlerError, HandlerFuture, Headers, RawMessage, SubscribeOptions,
    headers,
};

/// A subscription's settings with the configuration's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) concurrency: usize,
    pub(crate) max_ack_pending: usize,
    pub(crate) max_deliver: u32,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) ack_wait: Duration,
    pub(crate) trace_context: bool,
}

impl Resolved {
    pub(crate) fn new(options: &SubscribeOptions, config: &EventBusConfig) -> Self {
        let (concurrency, max_ack_pending) = if options.ordered {
            (1, 1)
        } else {
            let c = options
                .concurrency
                .unwrap_or(config.consumer.concurrency)
                .max(1);
            let pending = options.max_ack_pending.unwrap_or(config.max_ack_pending);
            (c, pending.max(c))
        };
        Resolved {
            concurrency,
            max_ack_pending,
            max_deliver: options.max_deliver.unwrap_or(config.max_deliver).max(1),
            backoff: options
                .backoff
                .clone()
                .unwrap_or_else(|| config.consumer.backoff.clone()),
            ack_wait: options.ack_wait.unwrap_or(config.ack_wait),
            trace_context: config.trace_context,
        }
    }

    /// What to do after delivery number `attempt` (1-based) ended with `outcome`.
    pub(crate) fn verdict(&self, attempt: u32, outcome: Result<(), HandlerError>) -> Verdict {
        match outcome {
            Ok(()) => Verdict::Ack,
            Err(e) if e.is_retryable() && attempt < self.max_deliver => {
                Verdict::Redeliver(self.backoff_delay(attempt), e)
            }
            Err(e) => Verdict::DeadLetter(e),
        }
    }

    /// The redelivery delay after failed delivery number `attempt` (1-based).
    pub(crate) fn backoff_delay(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) - 1) as usize;
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(self.ack_wait)
    }
}

/// What to do with a message after its handler ran.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Done: acknowledge.
    Ack,
    /// Retryable failure with deliveries left: redeliver after the delay.
    Redeliver(Duration, HandlerError),
    /// Give up: dead-letter, then terminate.
    DeadLetter(HandlerError),
}

/// Runs the pipeline on one delivery, with panics caught, and decides.
pub(crate) async fn run(pipeline: &Pipeline, msg: RawMessage, settings: &Resolved) -> Verdict {
    let attempt = msg.delivery.attempt();
    let outcome = match start(pipeline, msg, settings.trace_context).await {
        Started::Done(outcome) => outcome,
        Started::Running(rest) => rest.finish().await,
    };
    settings.verdict(attempt, outcome)
}

/// A handler after its first poll.
pub(crate) enum Started {
    /// It finished there, as most handlers do.
    Done(Result<(), HandlerError>),
    /// It is waiting for something; [`Running::finish`] drives it to the end.
    Running(Running),
}

/// A handler that did not finish at its first poll.
pub(crate) struct Running {
    handler: HandlerFuture,
    parent: Option<TraceParent>,
}

impl Running {
    /// Drives the handler to the end, in its trace, with panics caught.
    pub(crate) async fn finish(self) -> Result<(), HandlerError> {
        let caught = AssertUnwindSafe(self.handler).catch_unwind();
        trace::within(self.parent, caught)
            .await
            .unwrap_or_else(|panic| Err(panic_error(&*panic)))
    }
}

/// Starts the pipeline on `msg` and polls it once, in the delivery's trace (with
/// `trace_context`), with panics caught. Polling in place means a handler that does not wait
/// costs no future of its own: only one that is still running at its first poll needs a place
/// of its own, which is what [`Started::Running`] is for.
pub(crate) async fn start(pipeline: &Pipeline, msg: RawMessage, trace_context: bool) -> Started {
    let parent = trace_context
        .then(|| msg.delivery.headers().get(headers::TRACEPARENT))
        .flatten()
        .and_then(TraceParent::parse);
    let mut msg = Some(msg);
    std::future::poll_fn(|cx| {
        let msg = msg.take().expect("a ready poll_fn is polled once");
        let first = trace::sync_within(parent, || {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut handler = pipeline.run(msg);
                match handler.as_mut().poll(cx) {
                    Poll::Ready(outcome) => Started::Done(outcome),
                    Poll::Pending => Started::Running(Running { handler, parent }),
                }
            }))
        });
        Poll::Ready(first.unwrap_or_else(|panic| Started::Done(Err(panic_error(&*panic)))))
    })
    .await
}

/// Headers of the dead letter of a delivery: the original headers (its message id kept as
/// `Bus-Dlq-Msg-Id`), plus where it came from and why it failed.
pub(crate) fn dead_letter_headers(delivery: &Delivery, error: &HandlerError) -> Headers {
    let mut h = Headers::with_capacity(delivery.headers().len() + 8);
    for (name, value) in delivery.headers().iter() {
        // Another client may have sent a header this one cannot send back; the dead letter
        // keeps the rest (and the payload, unchanged).
        if check_name(name).and(check_value(name, value)).is_err() {
            tracing::debug!(header = name, "header not copied to the dead letter");
            continue;
        }
        if name.eq_ignore_ascii_case(headers::MSG_ID) {
            h.append(DLQ_ORIGINAL_MSG_ID, value.to_owned());
        } else {
            h.append(name.to_owned(), value.to_owned());
        }
    }
    // One dead letter per (group, message): a retried dead-letter publish is deduplicated,
    // while two groups that both give up keep a dead letter each.
    h.insert(
        headers::MSG_ID,
        format!("dlq:{}:{}", delivery.group(), delivery.stream_sequence()),
    );
    h.insert(headers::DLQ_TOPIC, delivery.topic().to_owned());
    h.insert(
        headers::DLQ_STREAM_SEQ,
        delivery.stream_sequence().to_string(),
    );
    h.insert(headers::DLQ_DELIVERIES, delivery.attempt().to_string());
    h.insert(headers::DLQ_GROUP, delivery.group().to_owned());
    h.insert(headers::DLQ_ERROR_CLASS, error.class().as_str());
    // Header values are single-line.
    let message: String = error
        .message()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1024)
        .collect();
    h.insert(headers::DLQ_ERROR, message);
    h
}

/// Header keeping the original message id on a dead letter.
pub(crate) const DLQ_ORIGINAL_MSG_ID: &str = "Bus-Dlq-Msg-Id";

/// A message id unique to this process run: 32 hex digits from a random seed and a counter.
pub(crate) fn new_message_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| RandomState::new().hash_one(std::time::SystemTime::now()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{seed:016x}{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repeats_last() {
        let mut c = EventBusConfig::default();
        c.consumer.backoff = vec![Duration::from_millis(10), Duration::from_millis(50)];
        let r = Resolved::new(&SubscribeOptions::default(), &c);
        let got: Vec<_> = (1..=4).map(|a| r.backoff_delay(a).as_millis()).collect();
        assert_eq!(got, [10, 50, 50, 50]);
        c.consumer.backoff.clear();
        let r = Resolved::new(&SubscribeOptions::default(), &c);
        assert_eq!(r.backoff_delay(1), c.ack_wait);
    }

    #[test]
    fn ordered_means_one_in_flight() {
        let opts = SubscribeOptions {
            ordered: true,
            concurrency: Some(8),
            ..Default::default()
        };
        let r = Resolved::new(&opts, &EventBusConfig::default());
        assert_eq!((r.concurrency, r.max_ack_pending), (1, 1));
    }

    #[test]
    fn dead_letter_headers_are_sendable_even_when_the_original_ones_are_not() {
        // As a client that does not check its headers could have sent them.
        let original: Headers = [
            ("Nats-Msg-Id", "evt-1"),
            ("tenant", "t-7"),
            ("bad name", "x"),
            ("multi", "line\nvalue"),
        ]
        .into_iter()
        .collect();
        let delivery = Delivery::new(
            "cqc.events.v1.ping",
            "g",
            original,
            3,
            42,
            std::time::SystemTime::now(),
        );
        let h = dead_letter_headers(&delivery, &HandlerError::permanent("no\r\nway"));
        h.validate().expect("every dead-letter header can be sent");
        assert_eq!(h.get("tenant"), Some("t-7"));
        assert_eq!(h.get(DLQ_ORIGINAL_MSG_ID), Some("evt-1"));
        assert_eq!(h.get(headers::MSG_ID), Some("dlq:g:42"));
        assert_eq!(h.get(headers::DLQ_ERROR), Some("no  way"));
        assert_eq!((h.get("bad name"), h.get("multi")), (None, None));
    }

    #[test]
    fn ids_are_unique() {
        let a = new_message_id();
        let b = new_message_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
