//! [`TestBus`]: a recording memory bus with awaitable assertions, for handler unit tests.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::memory::MemoryBus;
use crate::observe::{Observer, Settled, SettledAs};
use crate::{BackendKind, Error, ErrorClass, Event, EventBus, EventBusConfig, Headers, headers};

/// How long the `wait_*` methods wait unless told otherwise (in the test's time: with paused
/// time, only while nothing else can happen).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// A memory [`EventBus`] that records every publish (yours and your handlers') and every
/// handler outcome, for unit tests of handlers without a server.
///
/// It derefs to the [`EventBus`], so subscribe and publish as in production. Then wait:
/// [`wait_for`](Self::wait_for) events of a type, [`wait_idle`](Self::wait_idle) until nothing
/// is queued, running or waiting for a redelivery, or
/// [`wait_dead_lettered`](Self::wait_dead_lettered). A wait that times out panics with what the
/// bus saw. Under `#[tokio::test(start_paused = true)]` redelivery backoff (1 s, 5 s, 30 s by
/// default) takes no real time, so a retry test runs in milliseconds.
///
/// ```
/// use bus::{event_handler, testing::TestBus, Event, HandlerError, Topic};
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct OrderPlaced { #[prost(string, tag = "1")] pub id: String }
/// # impl Event for OrderPlaced { const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.order_placed");
/// #     const EVENT_TYPE: &'static str = "order_placed"; const FULL_NAME: &'static str = "cqc.events.v1.OrderPlaced"; }
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct OrderShipped { #[prost(string, tag = "1")] pub id: String }
/// # impl Event for OrderShipped { const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.order_shipped");
/// #     const EVENT_TYPE: &'static str = "order_shipped"; const FULL_NAME: &'static str = "cqc.events.v1.OrderShipped"; }
///
/// #[event_handler]
/// async fn ship(order: OrderPlaced, bus: bus::State<bus::EventBus>) -> Result<(), HandlerError> {
///     bus.publish(&OrderShipped { id: order.id }).await?;
///     Ok(())
/// }
///
/// # /*
/// #[tokio::test(start_paused = true)]
/// # */
/// async fn placing_an_order_ships_it() {
///     let bus = TestBus::new();
///     bus.subscribe(ship.with_state(bus.bus().clone())).await.unwrap();
///     bus.publish(&OrderPlaced { id: "o-1".into() }).await.unwrap();
///     assert_eq!(bus.wait_for::<OrderShipped>(1).await[0].id, "o-1");
/// }
/// # fn main() { tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true)
/// #     .build().unwrap().block_on(placing_an_order_ships_it()) }
/// ```
#[derive(Clone, Debug)]
pub struct TestBus {
    bus: EventBus,
    log: Arc<Log>,
}

/// A publish the bus accepted: yours, a handler's, or a dead letter.
#[derive(Clone, Debug)]
pub struct Published {
    /// The topic (for a dead letter, the dead-letter subject).
    pub topic: String,
    /// The encoded event.
    pub payload: Bytes,
    /// Its headers (`Nats-Msg-Id`, `Bus-Event-Type`, ...).
    pub headers: Headers,
}

impl Published {
    /// Whether this is an event of type `E` (by its `Bus-Event-Type` header, else its topic);
    /// dead letters are not.
    pub fn is<E: Event>(&self) -> bool {
        is_event::<E>(&self.topic, &self.headers)
    }

    /// The event, decoded as `E`.
    ///
    /// # Panics
    ///
    /// When the payload is not an `E`.
    pub fn decode<E: Event>(&self) -> E {
        decode(&self.payload, &self.topic)
    }

    /// Whether this is a dead letter.
    pub fn is_dead_letter(&self) -> bool {
        self.headers.get(headers::DLQ_ERROR_CLASS).is_some()
    }
}

/// A delivery a handler finished, and what became of it.
#[derive(Clone, Debug)]
pub struct Handled {
    /// The handler's name.
    pub handler: String,
    /// The group it handled it in.
    pub group: String,
    /// The event's topic.
    pub topic: String,
    /// Which delivery of the event this was (1 for the first).
    pub attempt: u32,
    /// The event's bytes.
    pub payload: Bytes,
    /// The event's headers.
    pub headers: Headers,
    /// What became of the delivery.
    pub outcome: Outcome,
}

impl Handled {
    /// Whether the event is of type `E`.
    pub fn is<E: Event>(&self) -> bool {
        is_event::<E>(&self.topic, &self.headers)
    }

    /// The event, decoded as `E`.
    ///
    /// # Panics
    ///
    /// When the payload is not an `E`.
    pub fn decode<E: Event>(&self) -> E {
        decode(&self.payload, &self.topic)
    }
}

/// What became of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded; the event was acknowledged.
    Acked,
    /// A retryable failure: the event comes again after `delay`.
    Redelivered {
        /// The backoff delay.
        delay: Duration,
        /// The error's class.
        class: ErrorClass,
        /// The error's message.
        error: String,
    },
    /// The event was dead-lettered (the dead letter is stored).
    DeadLettered {
        /// The error's class.
        class: ErrorClass,
        /// The error's message.
        error: String,
    },
}

impl From<SettledAs> for Outcome {
    fn from(s: SettledAs) -> Self {
        match s {
            SettledAs::Acked => Outcome::Acked,
            SettledAs::Redelivered {
                delay,
                class,
                error,
            } => Outcome::Redelivered {
                delay,
                class,
                error,
            },
            SettledAs::DeadLettered { class, error } => Outcome::DeadLettered { class, error },
        }
    }
}

impl TestBus {
    /// A test bus with the memory defaults (`EventBusConfig::memory()`).
    pub fn new() -> TestBus {
        Self::with_config(EventBusConfig::memory()).expect("the memory defaults are valid")
    }

    /// A test bus with `config` (backoff, `max_deliver`, timeouts, ...).
    ///
    /// # Errors
    ///
    /// When `config` is invalid, or names a backend other than memory: a `TestBus` never needs
    /// a server (use [`NatsServer`](super::NatsServer) to test against JetStream).
    pub fn with_config(config: EventBusConfig) -> Result<TestBus, Error> {
        if config.backend != BackendKind::Memory {
            return Err(Error::Config(
                "TestBus runs on the memory backend: set `backend = memory` (e.g. start from \
                 EventBusConfig::memory()), or use bus::testing::NatsServer for JetStream"
                    .into(),
            ));
        }
        let log = Arc::new(Log::default());
        let memory = MemoryBus::with_observer(config, Arc::clone(&log) as Arc<dyn Observer>)?;
        Ok(TestBus {
            bus: EventBus::from(memory),
            log,
        })
    }

    /// The bus, to give to handlers as state or to code under test.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Every publish so far, in order.
    pub fn published(&self) -> Vec<Published> {
        self.log.read(|s| s.published.clone())
    }

    /// The events of type `E` published so far, in order.
    pub fn events<E: Event>(&self) -> Vec<E> {
        self.log.read(|s| events_of::<E>(&s.published))
    }

    /// Every delivery handlers finished so far, in order.
    pub fn handled(&self) -> Vec<Handled> {
        self.log.read(|s| s.handled.clone())
    }

    /// Waits until at least `n` events of type `E` were published and returns them all;
    /// panics after [`DEFAULT_WAIT`] with what was seen. Every wait counts its timeout from
    /// its start or from when the latest redelivery is due, whichever is later, so a backoff
    /// longer than the timeout does not fail it.
    pub async fn wait_for<E: Event>(&self, n: usize) -> Vec<E> {
        self.wait_for_within(n, DEFAULT_WAIT).await
    }

    /// [`wait_for`](Self::wait_for) with its own timeout.
    pub async fn wait_for_within<E: Event>(&self, n: usize, timeout: Duration) -> Vec<E> {
        let what = format!("{n} `{}` events", E::FULL_NAME);
        self.log
            .wait(timeout, &what, |s| {
                let events = events_of::<E>(&s.published);
                (events.len() >= n).then_some(events)
            })
            .await
    }

    /// Waits until the bus is idle: every published event was handled and settled in every
    /// group it went to, and no redelivery is waiting. Panics after [`DEFAULT_WAIT`] with what
    /// was seen.
    pub async fn wait_idle(&self) {
        self.wait_idle_within(DEFAULT_WAIT).await;
    }

    /// [`wait_idle`](Self::wait_idle) with its own timeout.
    pub async fn wait_idle_within(&self, timeout: Duration) {
        self.log
            .wait(timeout, "the bus to be idle", |s| {
                (s.unsettled == 0).then_some(())
            })
            .await;
    }

    /// Waits until an event of type `E` is dead-lettered with `class` and returns the event;
    /// panics after [`DEFAULT_WAIT`] with what was seen.
    pub async fn wait_dead_lettered<E: Event>(&self, class: ErrorClass) -> E {
        let what = format!("a `{}` dead-lettered as {class}", E::FULL_NAME);
        self.log
            .wait(DEFAULT_WAIT, &what, |s| {
                s.handled
                    .iter()
                    .find(|h| {
                        h.is::<E>()
                            && matches!(&h.outcome, Outcome::DeadLettered { class: c, .. } if *c == class)
                    })
                    .map(Handled::decode::<E>)
            })
            .await
    }
}

impl Default for TestBus {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for TestBus {
    type Target = EventBus;

    fn deref(&self) -> &EventBus {
        &self.bus
    }
}

/// What the bus did, as its observer heard it.
#[derive(Debug, Default)]
struct Log {
    state: Mutex<Seen>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Seen {
    published: Vec<Published>,
    handled: Vec<Handled>,
    /// Deliveries queued, running or waiting for a redelivery.
    unsettled: usize,
    /// When the latest redelivery asked for is due.
    redelivery_due: Option<tokio::time::Instant>,
}

impl Log {
    fn read<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&crate::util::lock(&self.state))
    }

    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut crate::util::lock(&self.state));
        self.changed.notify_waiters();
    }

    /// Waits until `done` gives a value, or panics after `timeout` with what was seen.
    async fn wait<T>(&self, timeout: Duration, what: &str, done: impl Fn(&Seen) -> Option<T>) -> T {
        let start = tokio::time::Instant::now();
        loop {
            let changed = self.changed.notified();
            let (value, due) = self.read(|s| (done(s), s.redelivery_due));
            if let Some(value) = value {
                return value;
            }
            // A redelivery waiting for its backoff is not a reason to give up.
            let deadline = due.map_or(start, |due| due.max(start)) + timeout;
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                if let Some(value) = self.read(&done) {
                    return value;
                }
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {}",
                    self.read(summary)
                );
            }
        }
    }
}

impl Observer for Log {
    fn published(&self, topic: &str, payload: &Bytes, headers: &Headers, deliveries: usize) {
        let published = Published {
            topic: topic.to_owned(),
            payload: payload.clone(),
            headers: headers.clone(),
        };
        self.update(|s| {
            s.published.push(published);
            s.unsettled += deliveries;
        });
    }

    fn settled(&self, settled: Settled) {
        let Settled {
            handler,
            delivery,
            payload,
            outcome,
        } = settled;
        let handled = Handled {
            handler: handler.to_string(),
            group: delivery.group().to_owned(),
            topic: delivery.topic().to_owned(),
            attempt: delivery.attempt(),
            payload,
            headers: delivery.headers().clone(),
            outcome: outcome.into(),
        };
        self.update(|s| {
            match handled.outcome {
                Outcome::Redelivered { delay, .. } => {
                    let due = tokio::time::Instant::now() + delay;
                    s.redelivery_due = Some(s.redelivery_due.map_or(due, |d| d.max(due)));
                }
                _ => s.unsettled = s.unsettled.saturating_sub(1),
            }
            s.handled.push(handled);
        });
    }
}

fn is_event<E: Event>(topic: &str, headers: &Headers) -> bool {
    if headers.get(headers::DLQ_ERROR_CLASS).is_some() {
        return false;
    }
    match headers.get(headers::EVENT_TYPE) {
        Some(full_name) => full_name == E::FULL_NAME,
        None => topic == E::TOPIC.as_str(),
    }
}

fn decode<E: Event>(payload: &Bytes, topic: &str) -> E {
    <E as prost::Message>::decode(payload.clone())
        .unwrap_or_else(|e| panic!("the event on `{topic}` is not a `{}`: {e}", E::FULL_NAME))
}

fn events_of<E: Event>(published: &[Published]) -> Vec<E> {
    published
        .iter()
        .filter(|p| p.is::<E>())
        .map(Published::decode)
        .collect()
}

/// What the bus saw, for a failed wait: each publish and each handled delivery.
fn summary(seen: &Seen) -> String {
    let mut out = format!(
        "{} published, {} handled, {} unsettled",
        seen.published.len(),
        seen.handled.len(),
        seen.unsettled
    );
    for p in seen.published.iter().take(50) {
        let kind = p.headers.get(headers::EVENT_TYPE).unwrap_or("?");
        let _ = write!(out, "\n  published on {} ({kind})", p.topic);
    }
    for h in seen.handled.iter().take(50) {
        let _ = write!(
            out,
            "\n  handled by {} in {}: {} attempt {}: {:?}",
            h.handler, h.group, h.topic, h.attempt, h.outcome
        );
    }
    out
}
