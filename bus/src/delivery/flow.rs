//! How many messages a subscription takes ahead of its handlers: the one place that decides it.
//!
//! A message taken from the backend and not yet started must not age into a redelivery: on
//! JetStream the server redelivers a message that is not acknowledged within `ack_wait`, which
//! spends one of its `max_deliver` deliveries although no handler ever saw it. Two rules keep
//! that from happening:
//!
//! 1. **Take only what can start soon.** A worker asks for its free handler slots plus as many
//!    messages as its handlers can start within half of `ack_wait`, estimated from how long
//!    handlers take (a moving average). Fast handlers get large pulls (up to
//!    [`MAX_AHEAD`]), slow ones small pulls, so the messages of a group stay with the server
//!    and reach whichever member has room, instead of queueing in one process.
//! 2. **Keep what is held alive.** Whatever a worker holds anyway (the estimate was wrong,
//!    handlers got stuck) is reported in progress every `ack_wait / 3`, like a running
//!    handler's message, so it keeps its delivery count.
//!
//! On the memory backend nothing is redelivered behind the worker's back, so it takes only what
//! its free handler slots can start at once, which also shares a group's queue fairly among its
//! members.

use std::time::{Duration, Instant};

use super::DeliverySettings;

/// The most messages taken ahead of the handlers.
pub(crate) const MAX_AHEAD: usize = 1000;

/// The flow-control state of one worker.
#[derive(Debug)]
pub(crate) struct Flow {
    concurrency: usize,
    max_ack_pending: usize,
    /// A message taken now should start within this time: half of `ack_wait`.
    budget: Duration,
    /// Whether the backend redelivers unacknowledged messages by itself (JetStream).
    pull_ahead: bool,
    /// Moving average of handler run time, in seconds; `None` before the first one.
    handler_secs: Option<f64>,
}

impl Flow {
    pub(crate) fn new(settings: &DeliverySettings, pull_ahead: bool) -> Self {
        Flow {
            concurrency: settings.concurrency,
            max_ack_pending: settings.max_ack_pending,
            budget: settings.ack_wait / 2,
            pull_ahead,
            handler_secs: None,
        }
    }

    /// Records how long a handler ran (from its start to its outcome).
    pub(crate) fn record(&mut self, started: Option<Instant>) {
        let Some(started) = started else { return };
        let secs = started.elapsed().as_secs_f64();
        self.handler_secs = Some(match self.handler_secs {
            None => secs,
            Some(avg) => avg * 0.9 + secs * 0.1,
        });
    }

    /// Messages to keep in hand (running or waiting for a handler slot).
    fn target(&self) -> usize {
        if !self.pull_ahead {
            return self.concurrency;
        }
        let ahead = match self.handler_secs {
            // Nothing measured yet: as many as the handler slots, until it is known.
            None => self.concurrency,
            Some(secs) => {
                let startable =
                    self.concurrency as f64 * self.budget.as_secs_f64() / secs.max(1e-6);
                startable.min(MAX_AHEAD as f64) as usize
            }
        };
        (self.concurrency + ahead.max(1)).min(self.max_ack_pending.max(1))
    }

    /// How many more messages to take, with `in_hand` running or waiting in the worker and
    /// `unsettled` more that the backend keeps for it (memory redeliveries waiting for their
    /// delay). Never more than `max_ack_pending` unsettled in all.
    pub(crate) fn want(&self, in_hand: usize, unsettled: usize) -> usize {
        let by_target = self.target().saturating_sub(in_hand);
        let by_pending = self.max_ack_pending.saturating_sub(in_hand + unsettled);
        by_target.min(by_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventBusConfig, SubscribeOptions};

    fn flow(concurrency: usize, ack_wait: Duration, pull_ahead: bool) -> Flow {
        let config = EventBusConfig {
            ack_wait,
            ..Default::default()
        };
        let options = SubscribeOptions {
            concurrency: Some(concurrency),
            ..Default::default()
        };
        Flow::new(&DeliverySettings::new(&options, &config), pull_ahead)
    }

    #[test]
    fn memory_takes_only_free_slots() {
        let f = flow(16, Duration::from_secs(30), false);
        assert_eq!(f.want(0, 0), 16);
        assert_eq!(f.want(10, 0), 6);
        assert_eq!(f.want(16, 0), 0);
    }

    #[test]
    fn slow_handlers_get_small_pulls_fast_ones_large() {
        let mut f = flow(16, Duration::from_secs(2), true);
        assert_eq!(f.want(0, 0), 32, "before any measurement: twice the slots");
        // 250 ms handlers with a 2 s ack wait: 16 slots start 64 within 1 s.
        f.handler_secs = Some(0.25);
        assert_eq!(f.want(0, 0), 16 + 64);
        f.handler_secs = Some(0.000_01);
        assert_eq!(f.want(0, 0), 1000, "capped by max_ack_pending");
    }

    #[test]
    fn never_past_max_ack_pending() {
        let f = flow(4, Duration::from_secs(30), false);
        assert_eq!(f.want(0, 998), 2);
    }
}
