//! The handlers (single or batches) and settle actions a worker has under way.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::{Delivery, HandlerError};

/// A message being handled, with what settling it needs.
pub(super) struct InHand<M> {
    pub(super) msg: M,
    pub(super) attempt: u32,
    /// Its ordering key and stream sequence, when ordered by key.
    pub(super) key: Option<(u64, u64)>,
    /// When its handler started.
    pub(super) began: Instant,
}

/// What a future in the running set finished with.
pub(super) enum Finished<M> {
    /// A handler (or a batch) that waited after starting ended: the outcome of each message.
    Handled {
        done: Vec<(InHand<M>, Result<(), HandlerError>)>,
        id: u64,
        started: Option<Instant>,
    },
    /// A settle action (ack, redelivery, dead letter) completed.
    Settled,
}

/// What a running handler handles, for the log of a close that had to cancel it.
struct Handling {
    delivery: Delivery,
    since: Instant,
}

/// Handlers and settle actions under way.
pub(super) struct Running<M> {
    futures: FuturesUnordered<Pin<Box<dyn Future<Output = Finished<M>> + Send>>>,
    handlers: HashMap<u64, Handling>,
    next_id: u64,
}

impl<M> Running<M> {
    pub(super) fn new() -> Self {
        Running {
            futures: FuturesUnordered::new(),
            handlers: HashMap::new(),
            next_id: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.futures.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.futures.is_empty()
    }

    /// Notes a handler that starts waiting on `delivery` (the first of a batch); its future
    /// carries the returned id.
    pub(super) fn track(&mut self, delivery: Delivery) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.handlers.insert(
            id,
            Handling {
                delivery,
                since: Instant::now(),
            },
        );
        id
    }

    pub(super) fn push(&mut self, future: impl Future<Output = Finished<M>> + Send + 'static) {
        self.futures.push(Box::pin(future));
    }

    pub(super) async fn next(&mut self) -> Option<Finished<M>> {
        let done = self.futures.next().await;
        if let Some(Finished::Handled { id, .. }) = &done {
            self.handlers.remove(id);
        }
        done
    }

    /// Logs the handlers still running when the drain timeout cut them off.
    pub(super) fn log_stuck(&self, handler: &Arc<str>, group: &Arc<str>, timeout: Duration) {
        tracing::warn!(
            handler = %handler, group = %group, still_running = self.handlers.len(), ?timeout,
            "handlers still running at the drain timeout were cancelled; their messages are \
             delivered again (give handlers a timeout, or raise `drain_timeout`)"
        );
        for h in self.handlers.values() {
            tracing::warn!(
                handler = %handler, group = %group, topic = h.delivery.topic(),
                sequence = h.delivery.stream_sequence(), running_for = ?h.since.elapsed(),
                "handler stuck at close"
            );
        }
    }
}
