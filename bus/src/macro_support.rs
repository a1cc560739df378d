//! Not public API: what `#[event_handler]` expansions call, through `bus::__private`.
//!
//! The expansion keeps every type-dependent step behind one of the traits below, each with a
//! `#[diagnostic::on_unimplemented]` message, so a wrong event type, return type or topic gives
//! one error that says what to do instead of a cascade from the builder's bounds.

use crate::{Event, HandlerError, Subscription, SubscriptionBuilder, Topic};

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
    bus_names::check_filter(filter).is_ok()
}

pub use bus_names::filter_within;

/// The builder of handler `name` on `E`'s topic.
pub fn subscription<E: HandlerEvent>(name: &'static str) -> SubscriptionBuilder<E> {
    Subscription::new(name, E::TOPIC)
}

/// The builder of handler `name` on `filter`: a literal checked by the macro and by a `const`
/// in the expansion (with the rule `Subscription::with_filter` applies), or the subject of a
/// `Topic<E>`; so this cannot fail.
pub fn subscription_on<E: HandlerEvent>(
    name: &'static str,
    filter: &'static str,
) -> SubscriptionBuilder<E> {
    Subscription::with_filter::<E>(name, filter)
        .unwrap_or_else(|e| panic!("#[event_handler] `{name}`: {e}"))
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
