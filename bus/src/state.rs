//! [`State`]: application state (a database pool, an HTTP client, ...) shared by handlers.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Application state handed to an `#[event_handler]`, shared by every delivery and every handler
/// given the same state. It is an [`Arc`] inside, so cloning is cheap and `T` need not be
/// `Clone`.
///
/// A handler takes it as an argument after the event; it is bound when subscribing, with
/// `handler.with_state(state)`, so nothing is global and tests can give each bus its own state:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), bus::Error> {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use bus::{event_handler, Event, EventBus, HandlerError, State, Topic};
///
/// # #[derive(Clone, PartialEq, prost::Message)]
/// # pub struct OrderShipped { #[prost(uint64, tag = "1")] pub items: u64 }
/// # impl Event for OrderShipped {
/// #     const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.order_shipped");
/// #     const EVENT_TYPE: &'static str = "order_shipped";
/// #     const FULL_NAME: &'static str = "cqc.events.v1.OrderShipped";
/// # }
/// #[derive(Default)]
/// struct Stats {
///     items: AtomicU64,
/// }
///
/// #[event_handler]
/// async fn count_items(event: OrderShipped, stats: State<Stats>) -> Result<(), HandlerError> {
///     stats.items.fetch_add(event.items, Ordering::Relaxed);
///     Ok(())
/// }
///
/// let stats = State::new(Stats::default());
/// let bus = EventBus::memory();
/// bus.subscribe(count_items.with_state(stats.clone())).await?;
/// bus.publish(&OrderShipped { items: 3 }).await?;
/// # for _ in 0..1000 {
/// #     if stats.items.load(Ordering::Relaxed) == 3 { break }
/// #     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
/// # }
/// assert_eq!(stats.items.load(Ordering::Relaxed), 3);
/// bus.close().await?;
/// # Ok(()) }
/// ```
///
/// Destructure it to get the [`Arc`]: `State(stats): State<Stats>`.
pub struct State<T: ?Sized>(pub Arc<T>);

impl<T> State<T> {
    /// Wraps `value` for sharing.
    pub fn new(value: T) -> Self {
        State(Arc::new(value))
    }
}

impl<T: ?Sized> State<T> {
    /// The shared [`Arc`].
    pub fn into_inner(self) -> Arc<T> {
        self.0
    }
}

impl<T: ?Sized> Clone for State<T> {
    fn clone(&self) -> Self {
        State(Arc::clone(&self.0))
    }
}

impl<T: ?Sized> Deref for State<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: ?Sized> AsRef<T> for State<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for State<T> {
    fn from(value: T) -> Self {
        State::new(value)
    }
}

impl<T: ?Sized> From<Arc<T>> for State<T> {
    fn from(value: Arc<T>) -> Self {
        State(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("State").field(&&*self.0).finish()
    }
}

impl<T: Default> Default for State<T> {
    fn default() -> Self {
        State(Arc::default())
    }
}
