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
//! events published after it subscribed (there is no stored history to replay, so a start
//! position other than `new` and binding to a durable consumer are errors); a publish with a
//! `Nats-Msg-Id` seen before is not deduplicated; on `close()` redeliveries still waiting for
//! their delay and events still queued are discarded (and logged). Dead letters are delivered to
//! subscribers of the dead-letter subjects and also kept, the latest
//! [`DEAD_LETTER_CAPACITY`] of them, for [`MemoryBus::dead_letters`].

mod group;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;

use self::group::{GroupMember, Queued};
use crate::capture::Capture;
use crate::delivery::{DeadLetter as Letter, DeliverySettings, Worker};
use crate::message::Meta;
use crate::observe::MaybeObserver;
use crate::tasks::Tasks;
use crate::telemetry::DeliveryMetrics;
use crate::topic::filter_matches;
use crate::util::{FnvMap, lock, read, write};
use crate::{Error, EventBusConfig, Headers, PublishAck, Subscription};

/// The memory backend's `max_payload`, as on a default NATS server (1 MiB). As on JetStream, a
/// message (payload and headers) may use it less
/// [`DEAD_LETTER_HEADROOM`](crate::headers::DEAD_LETTER_HEADROOM) (4 KiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// How many dead letters [`MemoryBus::dead_letters`] keeps.
pub const DEAD_LETTER_CAPACITY: usize = 10_000;

/// One (filter, group): one bounded queue shared by the group's members.
pub(crate) struct Group {
    filter: String,
    name: Arc<str>,
    tx: mpsc::Sender<Queued>,
    /// Shared by the group's members, each taking what its free handler slots can start.
    rx: tokio::sync::Mutex<mpsc::Receiver<Queued>>,
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

pub(crate) struct Inner {
    config: EventBusConfig,
    /// Which stream captures which subjects, as configured.
    capture: Capture,
    groups: RwLock<Arc<[Arc<Group>]>>,
    routes: RwLock<FnvMap<Box<str>, Route>>,
    /// Serializes subscribe calls so two members of a new group find the same queue.
    subscribe_lock: Mutex<()>,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
    /// Events discarded at close (queued, waiting for a handler slot, or for a redelivery).
    discarded: AtomicU64,
    /// Set when `close()` begins: no new subscriptions, workers stop.
    closing: AtomicBool,
    /// Set once the workers stopped: no new publishes.
    closed: AtomicBool,
    sequence: AtomicU64,
    tasks: Tasks,
    /// Told of every publish and settled delivery (the test client's recording).
    observer: MaybeObserver,
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
        Ok(Self::new_validated(config))
    }

    /// [`new`](Self::new) for a configuration that was validated already.
    pub(crate) fn new_validated(config: EventBusConfig) -> Self {
        Self::observed(config, None)
    }

    /// A memory bus whose publishes and settled deliveries `observer` is told of.
    #[cfg(feature = "testing")]
    pub(crate) fn with_observer(
        config: EventBusConfig,
        observer: Arc<dyn crate::observe::Observer>,
    ) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self::observed(config, Some(observer)))
    }

    fn observed(config: EventBusConfig, observer: MaybeObserver) -> Self {
        MemoryBus {
            inner: Arc::new(Inner {
                capture: Capture::configured(&config),
                config,
                groups: RwLock::new(Arc::from(Vec::new())),
                routes: RwLock::new(FnvMap::default()),
                subscribe_lock: Mutex::new(()),
                dead_letters: Mutex::new(VecDeque::new()),
                discarded: AtomicU64::new(0),
                closing: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                sequence: AtomicU64::new(0),
                tasks: Tasks::default(),
                observer,
            }),
        }
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
        let checked = sub.check(
            &inner.config,
            &inner.capture,
            inner.closing.load(Ordering::Acquire),
        )?;
        let settings = DeliverySettings::new(&sub.options, &inner.config);
        refuse_what_memory_cannot_do(&sub, &settings)?;
        let group = inner.join(&sub.filter, checked.group);
        tracing::debug!(
            name = %sub.name, filter = %group.filter, group = %group.name,
            concurrency = settings.concurrency, "memory subscription started"
        );
        let worker = Worker {
            source: GroupMember::new(Arc::clone(inner), Arc::clone(&group)),
            handling: sub.handling,
            key: sub.key,
            settings,
            dead_letters: inner.config.dead_letter.clone(),
            name: sub.name.as_str().into(),
            group: Arc::clone(&group.name),
            shutdown: inner.tasks.shutdown(),
            drain_timeout: inner.config.drain_timeout,
            observer: inner.observer.clone(),
            metrics: DeliveryMetrics::new(&group.filter, &group.name),
        };
        inner.tasks.spawn(
            format!("the delivery worker of handler `{}`", sub.name),
            worker.run(),
        );
        Ok(())
    }

    pub(crate) async fn close(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.closing.swap(true, Ordering::AcqRel) {
            inner.tasks.wait().await;
            return Ok(());
        }
        // Workers stop taking events and let their handlers finish; what the handlers publish
        // meanwhile is queued (and counted as discarded if nothing takes it).
        inner.tasks.stop().await;
        inner.closed.store(true, Ordering::Release);
        *write(&inner.groups) = Arc::from(Vec::new());
        write(&inner.routes).clear();
        Ok(())
    }

    /// Events discarded at `close()`: still queued, waiting for a handler slot, or waiting for
    /// their redelivery delay. With the events handled and the publishes that returned an
    /// error, they account for every publish.
    pub fn discarded(&self) -> u64 {
        self.inner.discarded.load(Ordering::Acquire)
    }

    pub(crate) fn health(&self) -> crate::Health {
        if self.inner.closing.load(Ordering::Acquire) {
            return crate::Health::Unhealthy("the bus is closed".into());
        }
        match self.inner.tasks.failure() {
            Some(failure) => crate::Health::Unhealthy(failure),
            None => crate::Health::Healthy,
        }
    }
}

impl Inner {
    /// The group `name` on `filter`, created if it is new.
    fn join(&self, filter: &str, name: String) -> Arc<Group> {
        // Serialized, so two members of a new group find the same queue.
        let _serial = lock(&self.subscribe_lock);
        let groups = read(&self.groups).clone();
        if let Some(g) = groups
            .iter()
            .find(|g| g.filter == filter && *g.name == *name)
        {
            return Arc::clone(g);
        }
        let (tx, rx) = mpsc::channel(self.config.memory_queue_capacity);
        let group = Arc::new(Group {
            filter: filter.to_owned(),
            name: name.into(),
            tx,
            rx: tokio::sync::Mutex::new(rx),
        });
        let mut next: Vec<_> = groups.iter().cloned().collect();
        next.push(Arc::clone(&group));
        *write(&self.groups) = next.into();
        write(&self.routes).clear();
        group
    }

    /// The route of `topic`, from the cache or resolved now.
    fn route(&self, topic: &str) -> Route {
        if let Some(route) = read(&self.routes).get(topic) {
            return route.clone();
        }
        let groups = read(&self.groups).clone();
        let route = Route {
            topic: topic.into(),
            captured: self.capture.stream_of(topic).is_some(),
            groups: groups
                .iter()
                .filter(|g| filter_matches(&g.filter, topic))
                .cloned()
                .collect(),
        };
        let mut routes = write(&self.routes);
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
        crate::outgoing::check_size(topic, &payload, &headers, MAX_PAYLOAD)?;
        self.publish_checked(topic, payload, headers).await
    }

    /// Publishes a message whose size is checked already (or, for a dead letter, fits the
    /// headroom kept for it).
    async fn publish_checked(
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
        if let Some(observer) = &self.observer {
            let Queued { meta, payload } = &event;
            observer.published(topic, payload, &meta.headers, route.groups.len());
        }
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
        let shutdown = self.tasks.shutdown();
        for (group, event) in full {
            // A closing bus takes nothing more: its workers no longer make room.
            let sent = tokio::select! {
                sent = tokio::time::timeout_at(deadline, group.tx.send(event)) => sent,
                _ = shutdown.cancelled() => return Err(Error::Closed),
            };
            match sent {
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

    /// Keeps a dead letter and delivers it to the subscribers of its subject.
    async fn store_dead_letter(&self, letter: Letter) {
        let Letter {
            subject,
            payload,
            headers,
        } = letter;
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
        if let Err(e) = self.publish_checked(&subject, payload, headers).await
            && !matches!(e, Error::Closed)
        {
            tracing::error!(error = %e, "dead letter kept but not delivered to its subscribers");
        }
    }
}

/// The memory backend keeps no history and has no consumers: a start position other than
/// `new`, or binding to a durable consumer, would silently mean something else, so they are
/// errors that say so.
fn refuse_what_memory_cannot_do(
    sub: &Subscription,
    settings: &DeliverySettings,
) -> Result<(), Error> {
    if settings.start != crate::config::StartPosition::New {
        return Err(Error::Config(format!(
            "subscription `{}`: start = `{}` needs stored events, and the memory backend keeps \
             none (a new group sees events published after it); use `new` on memory (the \
             default), or JetStream",
            sub.name, settings.start
        )));
    }
    if let Some(durable) = &sub.options.durable {
        return Err(Error::Config(format!(
            "subscription `{}`: binding to durable consumer `{durable}` needs JetStream; the \
             memory backend has no consumers to take over",
            sub.name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bus_task_that_panics_makes_the_bus_unhealthy() {
        let bus = MemoryBus::new(EventBusConfig::memory()).unwrap();
        assert!(bus.health().is_healthy());
        bus.inner
            .tasks
            .spawn("the delivery worker of handler `h`".into(), async {
                panic!("invariant broken")
            });
        for _ in 0..100 {
            if !bus.health().is_healthy() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        match bus.health() {
            crate::Health::Unhealthy(why) => {
                assert!(
                    why.contains("handler `h`") && why.contains("invariant broken"),
                    "{why}"
                );
            }
            crate::Health::Healthy => panic!("still healthy after a task died"),
        }
        bus.close().await.unwrap();
    }
}
