//! Subscriptions: a handler bound to a topic filter and a group, with its middleware and
//! delivery settings.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::handler::{BatchFn, BatchHandler, FromMessage, Handler, HandlerFn, Typed, TypedBatch};
use crate::middleware::{Middleware, Pipeline};
use crate::{Error, Event, RawMessage, Topic};

/// Finds the ordering key of a message (hashed), for subscriptions ordered by key.
pub(crate) type KeyFn = Arc<dyn Fn(&RawMessage) -> Option<u64> + Send + Sync>;

/// How the events of a subscription reach its handler.
pub(crate) enum Handling {
    /// One event per call, through the middleware.
    Each(Pipeline),
    /// Events in batches.
    Batch {
        handler: Arc<dyn BatchHandler>,
        options: BatchOptions,
    },
}

/// How a batch handler's batches are formed: up to `max_events` events, collected for at most
/// `max_wait` after the first one waits.
///
/// ```
/// use std::time::Duration;
/// let options = bus::BatchOptions::new(100, Duration::from_millis(50));
/// assert_eq!(options.max_events, 100);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOptions {
    /// The most events in one batch (at least 1).
    pub max_events: usize,
    /// How long the first event of a batch waits for more before the batch runs.
    pub max_wait: Duration,
}

impl BatchOptions {
    /// Batches of up to `max_events`, waiting at most `max_wait` for them to fill.
    pub fn new(max_events: usize, max_wait: Duration) -> Self {
        BatchOptions {
            max_events: max_events.max(1),
            max_wait,
        }
    }
}

fn hash_key(key: impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

/// Per-subscription delivery settings; unset ones come from [`EventBusConfig`](crate::EventBusConfig).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Handlers running at once for this subscription.
    pub concurrency: Option<usize>,
    /// One message in flight at a time, in stream order (concurrency 1, one unacknowledged).
    pub ordered: bool,
    /// Deliveries before a retryable failure is dead-lettered.
    pub max_deliver: Option<u32>,
    /// Redelivery delays after retryable failures (the last one repeats).
    pub backoff: Option<Vec<Duration>>,
    /// Messages delivered but not yet acknowledged (including those waiting for redelivery).
    pub max_ack_pending: Option<usize>,
    /// How long the server waits for an acknowledgement before redelivering.
    pub ack_wait: Option<Duration>,
    /// The longest one delivery may run: `Some(Some(d))`, or `Some(None)` for no limit;
    /// `None` takes `consumer.handler_timeout` from the configuration.
    pub handler_timeout: Option<Option<Duration>>,
    /// Where the group starts when its consumer is created; `None` takes `consumer.start`.
    pub start: Option<crate::config::StartPosition>,
    /// Bind to this existing durable consumer (JetStream) instead of the one the bus names
    /// after the group and filter: to take over the position of a consumer another service
    /// created (`PullSubscribe(subject, "risk")` in nats.go).
    pub durable: Option<String>,
}

impl SubscribeOptions {
    /// Checks the settings a subscription overrides, with the bounds the configuration has
    /// (see [`EventBusConfig::validate`](crate::EventBusConfig::validate)).
    fn validate(&self, handler: &str) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Config(format!("subscription `{handler}`: {what}")));
        let ms = Duration::from_millis(1);
        let day = Duration::from_secs(24 * 3600);
        if let Some(n) = self.concurrency
            && !(1..=10_000).contains(&n)
        {
            return bad(format!("concurrency {n} is out of range: give 1 to 10000"));
        }
        if let Some(n) = self.max_deliver
            && !(1..=100_000).contains(&n)
        {
            return bad(format!("max_deliver {n} is out of range: give 1 to 100000"));
        }
        if let Some(n) = self.max_ack_pending
            && !(1..=1_000_000).contains(&n)
        {
            return bad(format!(
                "max_ack_pending {n} is out of range: give 1 to 1000000"
            ));
        }
        if let Some(d) = self.ack_wait
            && !(100 * ms..=day).contains(&d)
        {
            return bad(format!("ack_wait {d:?} is out of range: give 100ms to 24h"));
        }
        if let Some(Some(d)) = self.handler_timeout
            && !(ms..=day).contains(&d)
        {
            return bad(format!(
                "handler_timeout {d:?} is out of range: give 1ms to 24h"
            ));
        }
        if let Some(name) = &self.durable
            && let Err(e) = bus_names::check_group(name)
        {
            return bad(format!(
                "durable {name:?} is not a consumer name this bus can bind to: {}",
                e.reason()
            ));
        }
        for d in self.backoff.iter().flatten() {
            if !(ms..=7 * day).contains(d) {
                return bad(format!(
                    "backoff delay {d:?} is out of range: give 1ms to 7 days (a zero delay \
                     makes a hot redelivery loop)"
                ));
            }
        }
        Ok(())
    }
}

/// A typed or raw handler bound to a topic filter and a group, ready for
/// [`EventBus::subscribe`](crate::EventBus::subscribe).
///
/// ```
/// use bus::{Subscription, Topic, HandlerError};
/// # #[derive(Clone, PartialEq, prost::Message)] struct PriceUpdated {}
/// # impl bus::Event for PriceUpdated {
/// #     const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.price_updated");
/// #     const EVENT_TYPE: &'static str = "price_updated";
/// #     const FULL_NAME: &'static str = "cqc.events.v1.PriceUpdated";
/// # }
/// use bus::middleware::{Retry, Timeout};
/// use std::time::Duration;
///
/// let sub = Subscription::new("update_quotes", PriceUpdated::TOPIC)
///     .group("quotes")
///     .layer(Retry::new(3))
///     .layer(Timeout::new(Duration::from_secs(5)))
///     .concurrency(8)
///     .handler(|event: PriceUpdated| async move {
///         let _ = event;
///         Ok::<_, HandlerError>(())
///     });
/// assert_eq!(sub.filter(), "cqc.events.v1.price_updated");
/// # use bus::Event;
/// ```
pub struct Subscription {
    pub(crate) name: String,
    pub(crate) filter: String,
    pub(crate) group: Option<String>,
    pub(crate) options: SubscribeOptions,
    pub(crate) event_type: Option<&'static str>,
    pub(crate) handling: Handling,
    /// The ordering key, when events are ordered by key.
    pub(crate) key: Option<KeyFn>,
    /// A mistake in how the subscription was built, reported by `subscribe`.
    pub(crate) invalid: Option<String>,
}

impl Subscription {
    /// A subscription named `name` to the typed topic `topic`.
    ///
    /// `name` identifies the handler: the default group is the configured consumer name plus
    /// `name`, so keep it stable (on JetStream it names a durable consumer).
    // It starts the builder that ends in a `Subscription`; `new` reads best at the call site.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<E: Event>(name: impl Into<String>, topic: Topic<E>) -> SubscriptionBuilder<E> {
        SubscriptionBuilder::new(name.into(), topic.as_str().to_owned())
    }

    /// A subscription of handler `T` (an event type or [`RawMessage`]) to a filter that may
    /// contain wildcards. The filter is validated here.
    pub fn with_filter<T: FromMessage>(
        name: impl Into<String>,
        filter: &str,
    ) -> Result<SubscriptionBuilder<T>, Error> {
        crate::topic::validate_filter(filter)?;
        Ok(SubscriptionBuilder::new(name.into(), filter.to_owned()))
    }

    /// A dynamic subscription that receives [`RawMessage`]s, for topics whose type the handler
    /// does not know (decode them with an event registry, forward them, archive them...).
    pub fn raw(
        name: impl Into<String>,
        filter: &str,
    ) -> Result<SubscriptionBuilder<RawMessage>, Error> {
        Self::with_filter(name, filter)
    }

    /// The handler's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic filter.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The explicit group, if one was set.
    pub fn group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// The delivery settings.
    pub fn options(&self) -> &SubscribeOptions {
        &self.options
    }

    /// What every backend checks before it subscribes: the bus is open, the filter is valid and
    /// one stream captures all of it, the group is valid.
    pub(crate) fn check(
        &self,
        config: &crate::EventBusConfig,
        capture: &crate::capture::Capture,
        closed: bool,
    ) -> Result<Checked, Error> {
        if closed {
            return Err(Error::Closed);
        }
        crate::topic::validate_filter(&self.filter)?;
        self.options.validate(&self.name)?;
        if let Some(why) = &self.invalid {
            return Err(Error::Config(format!(
                "subscription `{}`: {why}",
                self.name
            )));
        }
        let Some(stream) = capture.stream_of(&self.filter) else {
            return Err(Error::NoStream {
                topic: self.filter.clone(),
            });
        };
        Ok(Checked {
            stream: stream.to_owned(),
            group: self.group_or_default(&config.consumer_name)?,
        })
    }

    /// The group this subscription joins given the configured consumer name: the explicit
    /// group, or `{consumer_name}-{name}`; checked against the group rule
    /// ([`validate_group`](crate::topic::validate_group)).
    pub(crate) fn group_or_default(&self, consumer_name: &str) -> Result<String, Error> {
        let group = match &self.group {
            Some(g) => g.clone(),
            None if consumer_name.is_empty() => self.name.clone(),
            None => format!("{consumer_name}-{}", self.name),
        };
        crate::topic::validate_group(&group)?;
        Ok(group)
    }
}

/// A subscription that passed [`Subscription::check`].
pub(crate) struct Checked {
    /// The stream that holds its messages.
    pub(crate) stream: String,
    /// Its group.
    pub(crate) group: String,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("name", &self.name)
            .field("filter", &self.filter)
            .field("group", &self.group)
            .field("event_type", &self.event_type)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Anything [`EventBus::subscribe`](crate::EventBus::subscribe) accepts: a [`Subscription`], or
/// what `#[event_handler]` generates.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be subscribed as it is",
    label = "not a subscription",
    note = "subscribe a `Subscription`, an `#[event_handler]` function by name, or, for an \
            `#[event_handler]` that takes `State<T>`, `handler.with_state(state)`"
)]
pub trait IntoSubscription {
    /// Converts into a subscription.
    fn into_subscription(self) -> Subscription;
}

impl IntoSubscription for Subscription {
    fn into_subscription(self) -> Subscription {
        self
    }
}

/// Builds a [`Subscription`]; finish with [`handler`](SubscriptionBuilder::handler).
#[must_use = "a subscription builder does nothing until `.handler(...)` is called and the result subscribed"]
pub struct SubscriptionBuilder<T> {
    name: String,
    filter: String,
    group: Option<String>,
    options: SubscribeOptions,
    layers: Vec<Box<dyn Middleware>>,
    key: Option<KeyFn>,
    _t: PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for SubscriptionBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionBuilder")
            .field("name", &self.name)
            .field("filter", &self.filter)
            .field("group", &self.group)
            .field("layers", &self.layers.len())
            .field("options", &self.options)
            .finish()
    }
}

impl<T: FromMessage> SubscriptionBuilder<T> {
    fn new(name: String, filter: String) -> Self {
        SubscriptionBuilder {
            name,
            filter,
            group: None,
            options: SubscribeOptions::default(),
            layers: Vec::new(),
            key: None,
            _t: PhantomData,
        }
    }

    /// Joins `group`: subscriptions in the same group share the events (each to one of them);
    /// different groups each receive every event.
    ///
    /// A group names a durable consumer, so it is ASCII letters, digits, `-` and `_` (the rule
    /// of [`validate_group`](crate::topic::validate_group), which `#[event_handler]` applies at
    /// compile time); another group fails [`EventBus::subscribe`](crate::EventBus::subscribe)
    /// with [`Error::InvalidGroup`].
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Adds a middleware. The first one added is the outermost: it sees the message first and
    /// the outcome last.
    pub fn layer(mut self, middleware: impl Middleware) -> Self {
        self.layers.push(Box::new(middleware));
        self
    }

    /// Runs up to `n` handlers at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = Some(n.max(1));
        self
    }

    /// Orders events by the value of header `name`: events with the same value are handled one
    /// at a time, in stream order, while events of different values run concurrently (up to
    /// `concurrency`). Events without the header are not ordered. See
    /// [`ordered_by`](SubscriptionBuilder::ordered_by) for what the order holds through.
    pub fn ordered_by_header(mut self, name: impl Into<String>) -> Self {
        let name: String = name.into();
        self.key = Some(Arc::new(move |msg: &RawMessage| {
            msg.headers().get(&name).map(hash_key)
        }));
        self
    }

    /// One message at a time, in order: the next one is delivered only after this one is
    /// acknowledged or dead-lettered.
    pub fn ordered(mut self) -> Self {
        self.options.ordered = true;
        self
    }

    /// Deliveries before a retryable failure is dead-lettered (at least 1).
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.options.max_deliver = Some(n.max(1));
        self
    }

    /// Redelivery delays after retryable failures; the last one repeats.
    pub fn backoff(mut self, delays: impl Into<Vec<Duration>>) -> Self {
        self.options.backoff = Some(delays.into());
        self
    }

    /// Messages delivered but not yet acknowledged, at most (at least 1).
    pub fn max_ack_pending(mut self, n: usize) -> Self {
        self.options.max_ack_pending = Some(n.max(1));
        self
    }

    /// How long the server waits for an acknowledgement before redelivering.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.options.ack_wait = Some(wait);
        self
    }

    /// The longest one delivery may run (the whole middleware chain and the handler) before it
    /// is cancelled and the event redelivered; overrides `consumer.handler_timeout`.
    pub fn handler_timeout(mut self, limit: Duration) -> Self {
        self.options.handler_timeout = Some(Some(limit));
        self
    }

    /// No limit on how long one delivery may run (a handler that never returns holds its slot,
    /// and `close()` waits the whole `drain_timeout` for it).
    pub fn no_handler_timeout(mut self) -> Self {
        self.options.handler_timeout = Some(None);
        self
    }

    /// Where the group starts reading when its consumer is created (overrides
    /// `consumer.start`): [`StartPosition::All`](crate::config::StartPosition::All) replays
    /// what the stream holds. An existing consumer keeps its position.
    pub fn start(mut self, start: crate::config::StartPosition) -> Self {
        self.options.start = Some(start);
        self
    }

    /// Binds to the existing durable consumer `name` (JetStream) instead of the one named after
    /// the group and filter, taking over its position: for a migration from a service that
    /// created it (nats.go `PullSubscribe(subject, "risk")`). Its delivery settings are updated
    /// to this subscription's, with a warning naming each change, and its start position is
    /// kept; a missing one is created. The memory backend refuses it: it has no consumers.
    pub fn durable(mut self, name: impl Into<String>) -> Self {
        self.options.durable = Some(name.into());
        self
    }

    /// Replaces all delivery settings at once.
    pub fn options(mut self, options: SubscribeOptions) -> Self {
        self.options = options;
        self
    }

    /// Finishes the subscription with its handler: an `async fn` or closure taking `T`, or `T`
    /// and the [`Delivery`](crate::Delivery), returning `Result<(), E>` with `E: Into<HandlerError>`.
    pub fn handler<F, Args>(self, f: F) -> Subscription
    where
        F: HandlerFn<T, Args>,
        Args: 'static,
    {
        let handler: Arc<dyn Handler> = Arc::new(Typed::<T, F, Args>::new(f));
        Subscription {
            name: self.name,
            filter: self.filter,
            group: self.group,
            options: self.options,
            event_type: T::FULL_NAME,
            handling: Handling::Each(Pipeline::new(self.layers, handler)),
            key: self.key,
            invalid: None,
        }
    }

    /// Finishes the subscription with a batch handler: an `async fn` or closure taking
    /// `Vec<T>`, up to `options.max_events` events collected for at most `options.max_wait`,
    /// returning one outcome for the batch (`Result<(), E>`) or one per event
    /// (`Vec<Result<(), E>>`, in order). Each event is then acknowledged, redelivered or
    /// dead-lettered on its own; an event that does not decode is dead-lettered and not passed
    /// to the handler. `concurrency` counts batches; middleware (`.layer`) does not apply to
    /// batches, so giving both is an error at subscribe.
    ///
    /// ```
    /// use std::time::Duration;
    /// use bus::{BatchOptions, HandlerError, Subscription, Topic};
    /// # #[derive(Clone, PartialEq, prost::Message)] struct PriceUpdated {}
    /// # impl bus::Event for PriceUpdated {
    /// #     const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.price_updated");
    /// #     const EVENT_TYPE: &'static str = "price_updated";
    /// #     const FULL_NAME: &'static str = "cqc.events.v1.PriceUpdated";
    /// # }
    /// # use bus::Event;
    /// let sub = Subscription::new("store_prices", PriceUpdated::TOPIC).batch_handler(
    ///     BatchOptions::new(500, Duration::from_millis(20)),
    ///     |prices: Vec<PriceUpdated>| async move {
    ///         // One round trip to the database for up to 500 events.
    ///         let _ = prices.len();
    ///         Ok::<_, HandlerError>(())
    ///     },
    /// );
    /// # let _ = sub;
    /// ```
    pub fn batch_handler<F>(self, options: BatchOptions, f: F) -> Subscription
    where
        F: BatchFn<T>,
    {
        let invalid = (!self.layers.is_empty()).then(|| {
            "middleware does not apply to a batch handler (it runs on one event at a time): \
             remove `.layer(..)`, and handle retries or timeouts in the handler or with \
             `handler_timeout`"
                .to_owned()
        });
        Subscription {
            name: self.name,
            filter: self.filter,
            group: self.group,
            options: self.options,
            event_type: T::FULL_NAME,
            handling: Handling::Batch {
                handler: Arc::new(TypedBatch::<T, F>::new(f)),
                options,
            },
            key: self.key,
            invalid,
        }
    }
}

impl<E: Event> SubscriptionBuilder<E> {
    /// Orders events by a key taken from the event: events with the same key are handled one
    /// at a time, in stream order, while events with different keys run concurrently (up to
    /// `concurrency`). A failed event holds back the later events of its key until it is
    /// acknowledged or dead-lettered, through its redeliveries.
    ///
    /// The order holds within one subscribing process: with several processes in one group,
    /// each takes events of any key, so order them by key only where one process consumes
    /// (or partition the keys by subject, one group per partition). Keys are compared by hash.
    ///
    /// ```
    /// use bus::{HandlerError, Subscription, Topic};
    /// # #[derive(Clone, PartialEq, prost::Message)] struct OrderPlaced {
    /// #     #[prost(string, tag = "1")] order_id: String }
    /// # impl bus::Event for OrderPlaced {
    /// #     const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.order_placed");
    /// #     const EVENT_TYPE: &'static str = "order_placed";
    /// #     const FULL_NAME: &'static str = "cqc.events.v1.OrderPlaced";
    /// # }
    /// # use bus::Event;
    /// let sub = Subscription::new("book_orders", OrderPlaced::TOPIC)
    ///     .ordered_by(|e: &OrderPlaced| e.order_id.clone())
    ///     .concurrency(32)
    ///     .handler(|e: OrderPlaced| async move { let _ = e; Ok::<_, HandlerError>(()) });
    /// # let _ = sub;
    /// ```
    pub fn ordered_by<K, F>(mut self, key: F) -> Self
    where
        K: std::hash::Hash,
        F: Fn(&E) -> K + Send + Sync + 'static,
    {
        self.key = Some(Arc::new(move |msg: &RawMessage| {
            msg.decode::<E>().ok().map(|e| hash_key(key(&e)))
        }));
        self
    }
}
