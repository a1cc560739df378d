//! Not public API: what `#[event_handler]` expansions call, through `bus::__private`.
//!
//! The expansion keeps every type-dependent step behind one of the traits below, each with a
//! `#[diagnostic::on_unimplemented]` message, so a wrong event type, return type or topic gives
//! one error that says what to do instead of a cascade from the builder's bounds.

use std::future::Future;
use std::time::Duration;

use crate::handler::SubscriptionBuilder;
use crate::middleware::Middleware;
use crate::topic::check_subject;
use crate::{Delivery, Event, HandlerError, SubscribeOptions, Subscription, Topic};

/// An [`Event`], as the first argument of an `#[event_handler]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event, so it cannot be the first argument of an `#[event_handler]`",
    label = "not a `bus::Event`",
    note = "generate the type from its `.proto` file with `bus-build` (which writes `impl bus::Event`), \
            or implement `bus::Event` for it: a `prost::Message` with `TOPIC`, `EVENT_TYPE` and `FULL_NAME`"
)]
pub trait HandlerEvent: Event {}

impl<E: Event> HandlerEvent for E {}

/// What an `#[event_handler]` may return: `Result<(), E>` with `E: Into<HandlerError>`.
#[diagnostic::on_unimplemented(
    message = "an `#[event_handler]` must return `Result<(), E>` where `E: Into<bus::HandlerError>`, not `{Self}`",
    label = "wrong return type",
    note = "return `Result<(), bus::HandlerError>`: any `std::error::Error` converts into a retryable \
            `HandlerError` with `?`, and `HandlerError::permanent(..)` marks an error that can never succeed"
)]
pub trait HandlerResult {
    /// The outcome as the bus sees it.
    fn into_handler_result(self) -> Result<(), HandlerError>;
}

impl<Er: Into<HandlerError>> HandlerResult for Result<(), Er> {
    fn into_handler_result(self) -> Result<(), HandlerError> {
        self.map_err(Into::into)
    }
}

/// A typed topic of event `E`, given to `#[event_handler(topic = PATH)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a topic of `{E}`, the event this handler takes",
    label = "expected a `bus::Topic<{E}>`",
    note = "a handler listens on a topic of its own event type: name a `Topic<{E}>` constant, \
            write a topic literal under `{E}`'s topic, or leave `topic` out to use `{E}::TOPIC`"
)]
pub trait TopicOf<E> {
    /// The subject.
    fn subject(&self) -> &'static str;
}

impl<E> TopicOf<E> for Topic<E> {
    fn subject(&self) -> &'static str {
        self.as_str()
    }
}

/// The subject of a typed topic of `E` (a `Topic<E>` subject passed `Topic::new`'s check, so it
/// is a valid filter too).
#[allow(clippy::needless_pass_by_value)] // by value, so the error points at the user's path
pub fn subject_of<E, T: TopicOf<E>>(topic: T) -> &'static str {
    topic.subject()
}

/// `E::TOPIC` as a string, usable in `const` checks.
pub const fn topic_of<E: HandlerEvent>() -> &'static str {
    E::TOPIC.as_str()
}

/// Whether `filter` is a valid subscription filter: the very rule the runtime applies.
pub const fn filter_is_valid(filter: &str) -> bool {
    check_subject(filter, true).is_ok()
}

/// Whether `filter` is `topic` itself or a subject under it (`topic.x`, `topic.*`, `topic.>`),
/// so it can only match topics that carry the same event type.
pub const fn filter_within(filter: &str, topic: &str) -> bool {
    let (f, t) = (filter.as_bytes(), topic.as_bytes());
    if f.len() < t.len() {
        return false;
    }
    let mut i = 0;
    while i < t.len() {
        if f[i] != t[i] {
            return false;
        }
        i += 1;
    }
    f.len() == t.len() || f[t.len()] == b'.'
}

/// What an `#[event_handler]` attribute configures, before the event type is applied.
#[must_use = "a handler spec does nothing until built"]
pub struct HandlerSpec {
    name: &'static str,
    filter: Option<&'static str>,
    group: Option<&'static str>,
    layers: Vec<Box<dyn Middleware>>,
    options: SubscribeOptions,
}

impl HandlerSpec {
    /// A handler named `name` on its event's topic, with no middleware.
    pub fn new(name: &'static str) -> Self {
        HandlerSpec {
            name,
            filter: None,
            group: None,
            layers: Vec::new(),
            options: SubscribeOptions::default(),
        }
    }

    /// Listens on `filter`: a literal checked by the macro and by a `const` in the expansion, or
    /// the subject of a `Topic<E>`.
    pub fn filter(mut self, filter: &'static str) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Joins `group`.
    pub fn group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }

    /// Adds a middleware, inside the ones added before.
    pub fn layer(mut self, middleware: impl Middleware) -> Self {
        self.layers.push(Box::new(middleware));
        self
    }

    /// Handlers running at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = Some(n);
        self
    }

    /// One message at a time, in order.
    pub fn ordered(mut self) -> Self {
        self.options.ordered = true;
        self
    }

    /// Deliveries before a retryable failure is dead-lettered.
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.options.max_deliver = Some(n);
        self
    }

    /// Redelivery delays.
    pub fn backoff(mut self, delays: Vec<Duration>) -> Self {
        self.options.backoff = Some(delays);
        self
    }

    /// The subscription of handler `f` on `E`'s topic (or the literal filter).
    pub fn build<E, F, Fut>(self, f: F) -> Subscription
    where
        E: HandlerEvent,
        F: Fn(E, Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let builder = match self.filter {
            // A literal filter was checked in a `const` with `filter_is_valid`, the rule
            // `with_filter` applies, and a `Topic<E>` subject is stricter: this cannot fail.
            Some(filter) => Subscription::with_filter::<E>(self.name, filter)
                .unwrap_or_else(|e| panic!("#[event_handler] `{}`: {e}", self.name)),
            None => Subscription::new(self.name, E::TOPIC),
        };
        self.finish(builder, f)
    }

    fn finish<E, F, Fut>(self, mut builder: SubscriptionBuilder<E>, f: F) -> Subscription
    where
        E: HandlerEvent,
        F: Fn(E, Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        if let Some(group) = self.group {
            builder = builder.group(group);
        }
        for layer in self.layers {
            builder = builder.layer(layer);
        }
        builder.options(self.options).handler(f)
    }
}

/// Subscriptions from a list of handlers, for
/// [`EventBus::subscribe_all`](crate::EventBus::subscribe_all): each item is anything
/// [`IntoSubscription`](crate::IntoSubscription), such as an `#[event_handler]` (written as is,
/// or `.with_state(state)` when it takes state) or a [`Subscription`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), bus::Error> {
/// use bus::{event_handler, EventBus, HandlerError, State};
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct Ping {}
/// # impl bus::Event for Ping {
/// #     const TOPIC: bus::Topic<Self> = bus::Topic::new("cqc.events.v1.ping");
/// #     const EVENT_TYPE: &'static str = "ping";
/// #     const FULL_NAME: &'static str = "cqc.events.v1.Ping";
/// # }
///
/// #[event_handler]
/// async fn log_ping(_event: Ping) -> Result<(), HandlerError> {
///     Ok(())
/// }
///
/// #[event_handler(concurrency = 4)]
/// async fn count_ping(_event: Ping, count: State<std::sync::atomic::AtomicU64>) -> Result<(), HandlerError> {
///     count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     Ok(())
/// }
///
/// let count: State<std::sync::atomic::AtomicU64> = State::default();
/// let bus = EventBus::memory();
/// bus.subscribe_all(bus::handlers![log_ping, count_ping.with_state(count.clone())]).await?;
/// # bus.close().await?;
/// # Ok(()) }
/// ```
#[macro_export]
macro_rules! handlers {
    ($($handler:expr),* $(,)?) => {
        [$($crate::IntoSubscription::into_subscription($handler)),*]
    };
}
