//! One member of a memory group: the memory backend's [`Source`] for the delivery worker. It
//! takes events from the group's queue (shared with the other members) and keeps its own
//! redeliveries until their delay is over.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio_util::time::DelayQueue;

use super::{Group, Inner};
use crate::Delivery;
use crate::delivery::{DeadLetter, Source};
use crate::message::Meta;

/// An event in a group's queue. Its metadata travels by value and is put behind an `Arc` by
/// the member that takes it: an allocation made on the publishing thread and freed on another
/// one costs several times one that stays on its thread.
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    pub(crate) meta: Meta,
    pub(crate) payload: Bytes,
}

/// An event taken by a member, with its delivery count; clones share metadata and payload.
#[derive(Clone, Debug)]
pub(crate) struct Taken {
    meta: Arc<Meta>,
    payload: Bytes,
    attempt: u32,
}

/// One `subscribe` call of a group.
pub(crate) struct GroupMember {
    bus: Arc<Inner>,
    group: Arc<Group>,
    /// Failed events waiting for their redelivery.
    redeliveries: DelayQueue<Taken>,
    /// The queue's events are taken through this buffer.
    batch: Vec<Queued>,
    /// Events taken but never started when the bus closed.
    discarded: usize,
}

impl GroupMember {
    pub(crate) fn new(bus: Arc<Inner>, group: Arc<Group>) -> Self {
        GroupMember {
            bus,
            group,
            redeliveries: DelayQueue::new(),
            batch: Vec::new(),
            discarded: 0,
        }
    }
}

impl Source for GroupMember {
    type Message = Taken;
    const REDELIVERS_UNSETTLED: bool = false;

    async fn recv(&mut self, want: usize, into: &mut Vec<Taken>) -> bool {
        tokio::select! {
            biased;
            Some(due) = self.redeliveries.next(), if !self.redeliveries.is_empty() => {
                into.push(due.into_inner());
                true
            }
            n = async { self.group.rx.lock().await.recv_many(&mut self.batch, want).await }, if want > 0 => {
                if n == 0 {
                    return false; // the queue is gone: the bus is closing
                }
                into.extend(self.batch.drain(..).map(|q| Taken {
                    meta: Arc::new(q.meta),
                    payload: q.payload,
                    attempt: 1,
                }));
                if n < want {
                    // The queue ran dry: give the publishers a moment before parking, so the
                    // next wake-up brings a batch rather than a single event.
                    tokio::task::yield_now().await;
                }
                true
            }
            else => std::future::pending().await,
        }
    }

    fn unsettled(&self) -> usize {
        self.redeliveries.len()
    }

    fn payload<'m>(&self, t: &'m Taken) -> &'m Bytes {
        &t.payload
    }

    fn delivery(&self, t: &Taken) -> Delivery {
        Delivery {
            meta: Arc::clone(&t.meta),
            group: Arc::clone(&self.group.name),
            attempt: t.attempt,
            payload_event_id: None,
        }
    }

    fn max_payload(&self) -> usize {
        super::MAX_PAYLOAD
    }

    async fn keep_alive(_: &Taken) {}

    fn ack(&mut self, _: Taken) -> Option<impl Future<Output = ()> + Send + use<>> {
        None::<std::future::Ready<()>>
    }

    fn redeliver(
        &mut self,
        t: Taken,
        delay: Duration,
    ) -> Option<impl Future<Output = ()> + Send + use<>> {
        let next = Taken {
            attempt: t.attempt + 1,
            ..t
        };
        self.redeliveries.insert(next, delay);
        None::<std::future::Ready<()>>
    }

    fn dead_letter(
        &mut self,
        _: Taken,
        letter: DeadLetter,
    ) -> Option<impl Future<Output = ()> + Send + use<>> {
        let bus = Arc::clone(&self.bus);
        Some(async move { bus.store_dead_letter(letter).await })
    }

    async fn give_back(&mut self, unstarted: Vec<Taken>) {
        self.discarded += unstarted.len();
    }

    async fn close(&mut self) {
        // Closed first, so a publish either got in (and is counted here) or gets `Closed`.
        let mut queued = 0;
        {
            let mut rx = self.group.rx.lock().await;
            rx.close();
            while rx.try_recv().is_ok() {
                queued += 1;
            }
        }
        let discarded = self.discarded + self.redeliveries.len() + queued;
        self.bus
            .discarded
            .fetch_add(discarded as u64, Ordering::AcqRel);
        if discarded > 0 {
            tracing::warn!(
                group = %self.group.name, discarded,
                "memory bus closed with undelivered events or pending redeliveries; \
                 they are discarded (the memory backend keeps nothing across close)"
            );
        }
    }
}
