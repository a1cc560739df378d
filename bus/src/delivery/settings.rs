//! A subscription's delivery settings, resolved against the configuration, and the verdict they
//! give on a handler's outcome.

use std::time::Duration;

use crate::{EventBusConfig, HandlerError, SubscribeOptions};

/// A subscription's settings with the configuration's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeliverySettings {
    /// Handlers running at once.
    pub(crate) concurrency: usize,
    /// Messages delivered and not yet settled, at most (server-side on JetStream).
    pub(crate) max_ack_pending: usize,
    /// Deliveries of a message before a retryable failure is dead-lettered.
    pub(crate) max_deliver: u32,
    /// Redelivery delays after retryable failures; the last one repeats.
    pub(crate) backoff: Vec<Duration>,
    /// How long the server waits for an acknowledgement before redelivering.
    pub(crate) ack_wait: Duration,
    /// Whether handlers run inside the trace of the event's `traceparent`.
    pub(crate) trace_context: bool,
    /// The longest one delivery may run, if bounded.
    pub(crate) handler_timeout: Option<Duration>,
    /// Where a new group starts.
    pub(crate) start: crate::config::StartPosition,
}

impl DeliverySettings {
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
        DeliverySettings {
            concurrency,
            max_ack_pending,
            max_deliver: options.max_deliver.unwrap_or(config.max_deliver).max(1),
            backoff: options
                .backoff
                .clone()
                .unwrap_or_else(|| config.consumer.backoff.clone()),
            ack_wait: options.ack_wait.unwrap_or(config.ack_wait),
            trace_context: config.trace_context,
            handler_timeout: options
                .handler_timeout
                .unwrap_or(config.consumer.handler_timeout),
            start: options.start.unwrap_or(config.consumer.start),
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

    /// How often a message that is held or being handled is reported in progress, so the server
    /// does not redeliver it.
    pub(crate) fn keep_alive_every(&self) -> Duration {
        (self.ack_wait / 3).max(Duration::from_millis(50))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repeats_last() {
        let mut c = EventBusConfig::default();
        c.consumer.backoff = vec![Duration::from_millis(10), Duration::from_millis(50)];
        let r = DeliverySettings::new(&SubscribeOptions::default(), &c);
        let got: Vec<_> = (1..=4).map(|a| r.backoff_delay(a).as_millis()).collect();
        assert_eq!(got, [10, 50, 50, 50]);
        c.consumer.backoff.clear();
        let r = DeliverySettings::new(&SubscribeOptions::default(), &c);
        assert_eq!(r.backoff_delay(1), c.ack_wait);
    }

    #[test]
    fn ordered_means_one_in_flight() {
        let opts = SubscribeOptions {
            ordered: true,
            concurrency: Some(8),
            ..Default::default()
        };
        let r = DeliverySettings::new(&opts, &EventBusConfig::default());
        assert_eq!((r.concurrency, r.max_ack_pending), (1, 1));
    }

    #[test]
    fn verdicts() {
        let c = EventBusConfig {
            max_deliver: 2,
            ..Default::default()
        };
        let r = DeliverySettings::new(&SubscribeOptions::default(), &c);
        assert!(matches!(r.verdict(1, Ok(())), Verdict::Ack));
        assert!(matches!(
            r.verdict(1, Err(HandlerError::retryable("x"))),
            Verdict::Redeliver(..)
        ));
        assert!(matches!(
            r.verdict(2, Err(HandlerError::retryable("x"))),
            Verdict::DeadLetter(_)
        ));
        assert!(matches!(
            r.verdict(1, Err(HandlerError::permanent("x"))),
            Verdict::DeadLetter(_)
        ));
    }
}
