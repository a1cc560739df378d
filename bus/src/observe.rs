//! Hooks into what a bus does, for the test client (`bus::testing::TestBus`): each publish a
//! backend accepts, and each delivery the worker settles. Not public: what observes a bus is
//! built into it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{Delivery, ErrorClass, HandlerError, Headers};

/// Told what a bus does; called inline, so it must be quick and must not block.
pub(crate) trait Observer: Send + Sync + 'static {
    /// A publish was accepted on `topic` and queued for `deliveries` groups.
    fn published(&self, topic: &str, payload: &Bytes, headers: &Headers, deliveries: usize);

    /// A delivery was settled: acknowledged, given back for redelivery, or dead-lettered (once
    /// the dead letter is stored).
    fn settled(&self, settled: Settled);
}

/// The observer a bus may have.
pub(crate) type MaybeObserver = Option<Arc<dyn Observer>>;

/// A delivery that was settled, and how.
// Only the test client (feature `testing`) reads it so far.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct Settled {
    /// The handler's name.
    pub(crate) handler: Arc<str>,
    /// The delivery (topic, group, headers, attempt).
    pub(crate) delivery: Delivery,
    /// The event's bytes.
    pub(crate) payload: Bytes,
    /// How it was settled.
    pub(crate) outcome: SettledAs,
}

/// How a delivery was settled.
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SettledAs {
    Acked,
    Redelivered {
        delay: Duration,
        class: ErrorClass,
        error: String,
    },
    DeadLettered {
        class: ErrorClass,
        error: String,
    },
}

impl SettledAs {
    pub(crate) fn redelivered(delay: Duration, e: &HandlerError) -> Self {
        SettledAs::Redelivered {
            delay,
            class: e.class(),
            error: e.message(),
        }
    }

    pub(crate) fn dead_lettered(e: &HandlerError) -> Self {
        SettledAs::DeadLettered {
            class: e.class(),
            error: e.message(),
        }
    }
}
