//! The in-memory backend: the embedded default, for development and tests.
//!
//! It keeps the delivery contract of the JetStream backend inside one process: groups (every
//! group gets every event, members of a group share them), wildcard filters, at-least-once with
//! redelivery after the backoff delay until `max_deliver`, dead letters with the same headers,
//! bounded concurrency and an ordered mode. Events travel as encoded bytes and are decoded per
//! subscriber, so an event that would not survive the wire does not survive here either.
//!
//! Every queue is bounded (`memory_queue_capacity` per group): a publisher waits for room, up to
//! `publish_timeout`, then gets a retryable [`Error::Timeout`]. A handler that publishes can
//! therefore slow down but never deadlock the bus.
//!
//! Differences from JetStream, by design: nothing survives the process; a subscription receives
//! events published after it subscribed (there is no stored history to replay); a publish with a
//! `Nats-Msg-Id` seen before is not deduplicated; on `close()` redeliveries still waiting for
//! their delay and events still queued are discarded (and logged). Dead letters are delivered to
//! subscribers of the dead-letter subjects and also kept, the latest
//! [`DEAD_LETTER_CAPACITY`] of them, for [`MemoryBus::dead_letters`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::time::DelayQueue;

use crate::consumer::{self, Resolved, Started, Verdict};
use crate::message::Meta;
use crate::middleware::Pipeline;
use crate::topic::{filter_covers, filter_matches, validate_filter};
use crate::{Delivery, Error, EventBusConfig, Headers, PublishAck, RawMessage, Subscription};

/// The largest payload accepted, as on a default NATS server (1 MiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// How many dead letters [`MemoryBus::dead_letters`] keeps.
pub const DEAD_LETTER_CAPACITY: usize = 10_000;

/// An event as stored; clones share the metadata and the payload bytes.
#[derive(Clone, Debug)]
struct Stored {
    meta: Arc<Meta>,
    payload: Bytes,
}

/// An event in a group's queue. Its metadata travels by value and is put behind an `Arc` by
/// the consumer: an allocation made on the publishing thread and freed on another one costs
/// several times one that stays on its thread.
#[derive(Clone, Debug)]
struct Queued {
    meta: Meta,
    payload: Bytes,
}

impl From<Queued> for Stored {
    fn from(q: Queued) -> Self {
        Stored {
            meta: Arc::new(q.meta),
            payload: q.payload,
        }
    }
}

/// One (filter, group): one bounded queue shared by the group's members.
struct Group {
    filter: String,
    name: Arc<str>,
    tx: mpsc::Sender<Queued>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>,
}

/// Where a topic goes: resolved once per topic and cached until the subscriptions change.
#[derive(Clone)]
struct Route {
    topic: Arc<str>,
    captured: bool,
    groups: Arc<[Arc<Group>]>,
}

/// Topics whose route is cached, at most; past it the cache starts over.
const ROUTE_CACHE_CAPACITY: usize = 4096;

/// A dead letter kept by the memory backend.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    /// The dead-letter subject it was published on.
    pub subject: String,
    /// The original payload, unchanged.
    pub payload: Bytes,
    /// The dead-letter headers (original topic, sequence, deliveries, group, error).
    pub headers: Headers,
}

struct Inner {
    config: EventBusConfig,
    groups: RwLock<Arc<[Arc<Group>]>>,
    routes: RwLock<HashMap<Box<str>, Route>>,
    /// Serializes subscribe calls so two members of a new group find the same queue.
    subscribe_lock: Mutex<()>,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
    closed: AtomicBool,
    sequence: AtomicU64,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The in-memory event bus. Cheap to clone; clones share the bus.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), bus::Error> {
/// use bus::{EventBus, Headers, RawMessage, Subscription};
///
/// let bus = EventBus::memory();
/// let (tx, mut rx) = tokio::sync::mpsc::channel(1);
/// bus.subscribe(Subscription::raw("echo", "cqc.events.v1.>")?.handler(move |m: RawMessage| {
///     let tx = tx.clone();
///     async move { tx.send(m.payload).await.map_err(bus::HandlerError::permanent) }
/// }))
/// .await?;
/// bus.publish_raw("cqc.events.v1.ping", &b"hi"[..], Headers::new()).await?;
/// assert_eq!(&rx.recv().await.unwrap()[..], b"hi");
/// bus.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .field(
                "groups",
                &self.inner.groups.read().map(|g| g.len()).unwrap_or(0),
            )
            .finish_non_exhaustive()
    }
}

impl MemoryBus {
    /// A memory bus with `config` (its JetStream-only settings are ignored).
    pub fn new(config: EventBusConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(MemoryBus {
            inner: Arc::new(Inner {
                config,
                groups: RwLock::new(Arc::from(Vec::new())),
                routes: RwLock::new(HashMap::new()),
                subscribe_lock: Mutex::new(()),
                dead_letters: Mutex::new(VecDeque::new()),
                closed: AtomicBool::new(false),
                sequence: AtomicU64::new(0),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EventBusConfig {
        &self.inner.config
    }

    /// The latest dead letters, oldest first (at most [`DEAD_LETTER_CAPACITY`]).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.inner.dead_letters).iter().cloned().collect()
    }

    pub(crate) async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        headers: Headers,
    ) -> Result<PublishAck, Error> {
        self.inner.publish(topic, payload, headers).await
    }

    pub(crate) async fn subscribe(&self, sub: Subscription) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        validate_filter(&sub.filter)?;
        if !inner.captured(&sub.filter, true) {
            return Err(Error::NoStream { topic: sub.filter });
        }
        let group_name = sub.group_or_default(&inner.config.consumer_name);
        let settings = Resolved::new(&sub.options, &inner.config);
        let group = {
            let _serial = lock(&inner.subscribe_lock);
            let groups = inner
                .groups
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            match groups
                .iter()
                .find(|g| g.filter == sub.filter && *g.name == *group_name)
            {
                Some(g) => Arc::clone(g),
                None => {
                    let (tx, rx) = mpsc::channel(inner.config.memory_queue_capacity);
                    let g = Arc::new(Group {
                        filter: sub.filter.clone(),
                        name: group_name.into(),
                        tx,
                        rx: Arc::new(tokio::sync::Mutex::new(rx)),
                    });
                    let mut next: Vec<_> = groups.iter().cloned().collect();
                    next.push(Arc::clone(&g));
                    *inner.groups.write().unwrap_or_else(|e| e.into_inner()) = next.into();
                    inner
                        .routes
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                    g
                }
            }
        };
        tracing::debug!(
            name = %sub.name, filter = %group.filter, group = %group.name,
            concurrency = settings.concurrency, "memory subscription started"
        );
        let member = Member {
            bus: Arc::clone(inner),
            group,
            pipeline: sub.pipeline,
            settings,
        };
        inner.tasks.spawn(member.run());
        Ok(())
    }

    pub(crate) async fn close(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            inner.tasks.wait().await;
            return Ok(());
        }
        inner.shutdown.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        *inner.groups.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(Vec::new());
        inner
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Whether a stream captures `subject` (events stream or dead letters); with `filter`, the
    /// whole filter must fall inside one stream subject, as JetStream requires of a consumer.
    fn captured(&self, subject: &str, filter: bool) -> bool {
        let dlq = self.config.dead_letter.filter();
        let check = |stream_subject: &str| {
            if filter {
                filter_covers(stream_subject, subject)
            } else {
                filter_matches(stream_subject, subject)
            }
        };
        self.config.stream.subjects.iter().any(|s| check(s)) || check(&dlq)
    }

    /// The route of `topic`, from the cache or resolved now.
    fn route(&self, topic: &str) -> Route {
        if let Some(route) = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
        {
            return route.clone();
        }
        let groups = self
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let route = Route {
            topic: topic.into(),
            captured: self.captured(topic, false),
            groups: groups
                .iter()
                .filter(|g| filter_matches(&g.filter, topic))
                .cloned()
                .collect(),
        };
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if routes.len() >= ROUTE_CACHE_CAPACITY {
            routes.clear();
        }
        routes.insert(topic.into(), route.clone());
        route
    }

    async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        headers: Headers,
    ) -> Result<PublishAck, Error> {
        let mut full = Vec::new();
        let ack = self.offer(topic, payload, headers, &mut full)?;
        if !full.is_empty() {
            // Boxed: the waiting (with its timer) is the rare path, and keeping it out of line
            // keeps this future, which every publish builds and moves, small.
            Box::pin(self.wait_for_room(topic, full)).await?;
        }
        Ok(ack)
    }

    /// Checks and sequences an event, and queues it for every group with room, without
    /// waiting; the groups whose queue is full are left in `full` with their copy.
    fn offer(
        &self,
        topic: &str,
        payload: Bytes,
        headers: Headers,
        full: &mut Vec<(Arc<Group>, Queued)>,
    ) -> Result<PublishAck, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let route = self.route(topic);
        if !route.captured {
            return Err(Error::NoStream {
                topic: topic.to_owned(),
            });
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge {
                topic: topic.to_owned(),
                size: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let event = Queued {
            meta: Meta {
                topic: route.topic,
                headers,
                stream_sequence: sequence,
                published: SystemTime::now(),
            },
            payload,
        };
        let mut offer = |group: &Arc<Group>, event: Queued| match group.tx.try_send(event) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(event)) => {
                full.push((Arc::clone(group), event));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::Closed),
        };
        // Every group but the last gets a copy; the last takes the event itself.
        if let Some((last, others)) = route.groups.split_last() {
            for group in others {
                offer(group, event.clone())?;
            }
            offer(last, event)?;
        }
        Ok(PublishAck {
            sequence,
            duplicate: false,
        })
    }

    /// Waits, up to `publish_timeout` in all, for room in the queues that were full.
    async fn wait_for_room(
        &self,
        topic: &str,
        full: Vec<(Arc<Group>, Queued)>,
    ) -> Result<(), Error> {
        let wait = self.config.publish_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        for (group, event) in full {
            match tokio::time::timeout_at(deadline, group.tx.send(event)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Closed),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: format!(
                            "waiting for room in the queue of group `{}` on `{topic}` \
                             (its handlers are behind)",
                            group.name
                        ),
                        after: wait,
                    });
                }
            }
        }
        Ok(())
    }

    /// Publishes a dead letter to its subject and keeps a copy.
    async fn dead_letter(&self, delivery: &Delivery, payload: Bytes, error: &crate::HandlerError) {
        let subject = self.config.dead_letter.subject_for(delivery.topic());
        let headers = consumer::dead_letter_headers(delivery, error);
        tracing::warn!(
            topic = delivery.topic(), group = delivery.group(), attempt = delivery.attempt(),
            class = error.class().as_str(), error = %error, dead_letter = %subject,
            "message dead-lettered"
        );
        {
            let mut kept = lock(&self.dead_letters);
            if kept.len() == DEAD_LETTER_CAPACITY {
                kept.pop_front();
            }
            kept.push_back(DeadLetter {
                subject: subject.clone(),
                payload: payload.clone(),
                headers: headers.clone(),
            });
        }
        // Subscribers of the dead-letter subjects get it too; after close there are none.
        if let Err(e) = self.publish(&subject, payload, headers).await
            && !matches!(e, Error::Closed)
        {
            tracing::error!(error = %e, "dead letter kept but not delivered to its subscribers");
        }
    }
}

/// One `subscribe` call: pulls from its group's queue and runs the handler.
struct Member {
    bus: Arc<Inner>,
    group: Arc<Group>,
    pipeline: Pipeline,
    settings: Resolved,
}

/// What a finished delivery leaves to do: nothing, or a redelivery after a delay.
type Settled = Option<(Stored, u32, Duration)>;

/// A delivery still in progress: a running handler, or a dead letter being published.
type BoxSettle<'a> = Pin<Box<dyn Future<Output = Settled> + Send + 'a>>;

impl Member {
    fn delivery(&self, stored: &Stored, attempt: u32) -> Delivery {
        Delivery {
            meta: Arc::clone(&stored.meta),
            group: Arc::clone(&self.group.name),
            attempt,
        }
    }

    /// Settles a delivery that ended with `outcome`: acknowledged, to redeliver, or to
    /// dead-letter (which needs a publish, so it is returned as a future; a rare path).
    fn conclude(
        &self,
        stored: Stored,
        attempt: u32,
        outcome: Result<(), crate::HandlerError>,
    ) -> Result<Settled, BoxSettle<'_>> {
        match self.settings.verdict(attempt, outcome) {
            Verdict::Ack => Ok(None),
            Verdict::Redeliver(delay, e) => {
                tracing::debug!(topic = %stored.meta.topic, attempt, error = %e, ?delay, "redelivering");
                Ok(Some((stored, attempt + 1, delay)))
            }
            Verdict::DeadLetter(e) => Err(Box::pin(async move {
                let delivery = self.delivery(&stored, attempt);
                self.bus.dead_letter(&delivery, stored.payload, &e).await;
                None
            })),
        }
    }

    /// Drives a handler that did not finish at its first poll, then settles it.
    async fn finish(&self, stored: Stored, attempt: u32, rest: consumer::Running) -> Settled {
        let outcome = rest.finish().await;
        match self.conclude(stored, attempt, outcome) {
            Ok(settled) => settled,
            Err(dead_letter) => dead_letter.await,
        }
    }

    async fn run(self) {
        let Resolved {
            concurrency,
            max_ack_pending,
            ..
        } = self.settings;
        let shutdown = self.bus.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut running: FuturesUnordered<BoxSettle<'_>> = FuturesUnordered::new();
        let mut delayed: DelayQueue<(Stored, u32)> = DelayQueue::new();
        let mut ready: VecDeque<(Stored, u32)> = VecDeque::new();
        let mut pending = 0usize; // running + delayed + ready: delivered, not yet settled
        let mut batch = Vec::with_capacity(concurrency.min(64));
        let rx = Arc::clone(&self.group.rx);
        let this = &self;
        loop {
            while running.len() < concurrency {
                let Some((stored, attempt)) = ready.pop_front() else {
                    break;
                };
                // Most handlers finish without waiting: settle those right here and only
                // give the ones that are still pending a place in `running`.
                let msg = RawMessage {
                    payload: stored.payload.clone(),
                    delivery: this.delivery(&stored, attempt),
                };
                let outcome =
                    match consumer::start(&this.pipeline, msg, this.settings.trace_context).await {
                        Started::Done(outcome) => outcome,
                        Started::Running(rest) => {
                            running.push(Box::pin(this.finish(stored, attempt, rest)));
                            continue;
                        }
                    };
                match this.conclude(stored, attempt, outcome) {
                    Ok(settled) => settle(settled, &mut delayed, &mut pending),
                    Err(dead_letter) => running.push(dead_letter),
                }
            }
            let room = (concurrency - running.len()).min(max_ack_pending - pending);
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                Some(settled) = running.next(), if !running.is_empty() => {
                    settle(settled, &mut delayed, &mut pending);
                }
                Some(expired) = delayed.next(), if !delayed.is_empty() => {
                    ready.push_back(expired.into_inner());
                }
                n = async { rx.lock().await.recv_many(&mut batch, room).await },
                    if room > 0 && ready.is_empty() =>
                {
                    if n == 0 {
                        break; // the queue is gone: the bus is closing
                    }
                    pending += n;
                    ready.extend(batch.drain(..).map(|q| (Stored::from(q), 1)));
                    if n < room {
                        // The queue ran dry: give the publishers a moment before parking, so
                        // the next wake-up brings a batch rather than a single message.
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        // Closing: no new messages; let in-flight handlers finish, within the drain timeout.
        let in_flight = running.len();
        let drain = async { while running.next().await.is_some() {} };
        if tokio::time::timeout(self.bus.config.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                group = %self.group.name, in_flight,
                timeout = ?self.bus.config.drain_timeout,
                "handlers still running at the drain timeout were cancelled"
            );
        }
        let mut queued = 0;
        if let Ok(mut rx) = rx.try_lock() {
            while rx.try_recv().is_ok() {
                queued += 1;
            }
        }
        let discarded = delayed.len() + ready.len() + queued;
        if discarded > 0 {
            tracing::warn!(
                group = %self.group.name, discarded,
                "memory bus closed with undelivered events or pending redeliveries; \
                 they are discarded (the memory backend keeps nothing across close)"
            );
        }
    }
}

fn settle(settled: Settled, delayed: &mut DelayQueue<(Stored, u32)>, pending: &mut usize) {
    match settled {
        Some((stored, attempt, delay)) => {
            delayed.insert((stored, attempt), delay);
        }
        None => *pending -= 1,
    }
}
