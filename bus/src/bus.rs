//! [`EventBus`]: the one handle services use, whatever the backend.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::memory::MemoryBus;
use crate::outgoing::{encode_event, new_message_id};
use crate::telemetry::PublishMetrics;
use crate::trace::Producer;
use crate::{BackendKind, Error, Event, EventBusConfig, Headers, IntoSubscription, Topic, headers};

/// The server's acknowledgement of a publish: the event is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishAck {
    /// The event's sequence number in its stream.
    pub sequence: u64,
    /// The server had already stored an event with the same `Nats-Msg-Id` in its duplicate
    /// window, and dropped this one.
    pub duplicate: bool,
}

/// The health of a bus, from [`EventBus::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Connected and answering.
    Healthy,
    /// Closed, disconnected, or not answering; the reason says which.
    Unhealthy(String),
}

impl Health {
    /// Whether the bus is healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

#[derive(Clone, Debug)]
enum Backend {
    Memory(MemoryBus),
    #[cfg(feature = "jetstream")]
    JetStream(crate::jetstream::JetStreamBus),
}

/// A typed event bus over the configured backend. Cheap to clone; clones share the bus.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), bus::Error> {
/// use bus::{Event, EventBus, EventBusConfig, HandlerError, Subscription, Topic};
/// # #[derive(Clone, PartialEq, prost::Message)] pub struct PriceUpdated {
/// #     #[prost(double, tag = "1")] pub value: f64 }
/// # impl Event for PriceUpdated {
/// #     const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.price_updated");
/// #     const EVENT_TYPE: &'static str = "price_updated";
/// #     const FULL_NAME: &'static str = "cqc.events.v1.PriceUpdated";
/// # }
///
/// // The backend comes from the configuration (`BUS_BACKEND=jetstream` ...).
/// let bus = EventBus::connect(EventBusConfig::from_env()?).await?;
/// bus.subscribe(
///     Subscription::new("log_prices", PriceUpdated::TOPIC)
///         .handler(|e: PriceUpdated| async move { println!("{}", e.value); Ok::<_, HandlerError>(()) }),
/// )
/// .await?;
/// bus.publish(&PriceUpdated { value: 42.0 }).await?;
/// bus.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct EventBus {
    backend: Arc<Backend>,
    trace_context: bool,
    /// The publish series of `bus::telemetry`.
    publish_metrics: Arc<PublishMetrics>,
}

impl EventBus {
    /// Builds the bus the configuration asks for, connecting if it is remote.
    pub async fn connect(config: EventBusConfig) -> Result<EventBus, Error> {
        config.validate()?;
        match config.backend {
            BackendKind::Memory => Ok(Self::from(MemoryBus::new_validated(config))),
            #[cfg(feature = "jetstream")]
            BackendKind::JetStream => Ok(Self::from(
                crate::jetstream::JetStreamBus::connect_validated(config).await?,
            )),
            #[cfg(not(feature = "jetstream"))]
            BackendKind::JetStream => Err(Error::Config(
                "the JetStream backend is not available in this build (enable the `jetstream` \
                 feature of `bus`); or use `backend = \"memory\"`"
                    .into(),
            )),
        }
    }

    /// An in-memory bus with the default configuration.
    pub fn memory() -> EventBus {
        Self::from(
            MemoryBus::new(EventBusConfig::memory()).expect("the default configuration is valid"),
        )
    }

    /// The memory backend, if this bus runs on it.
    pub fn as_memory(&self) -> Option<&MemoryBus> {
        match &*self.backend {
            Backend::Memory(m) => Some(m),
            #[cfg(feature = "jetstream")]
            Backend::JetStream(_) => None,
        }
    }

    /// The JetStream backend, if this bus runs on it.
    #[cfg(feature = "jetstream")]
    pub fn as_jetstream(&self) -> Option<&crate::jetstream::JetStreamBus> {
        match &*self.backend {
            Backend::JetStream(j) => Some(j),
            Backend::Memory(_) => None,
        }
    }

    /// Publishes `event` on its type's topic and returns once it is stored.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PublishAck, Error> {
        self.publish_to(E::TOPIC, event).await
    }

    /// Publishes `event` on `topic`, which must be a topic of the same event type.
    ///
    /// ```compile_fail
    /// # use bus::{Event, EventBus, Topic};
    /// # #[derive(Clone, PartialEq, prost::Message)] struct A {}
    /// # #[derive(Clone, PartialEq, prost::Message)] struct B {}
    /// # const A_TOPIC: Topic<A> = Topic::new("a");
    /// # async fn f(bus: EventBus) {
    /// // A `Topic<A>` does not take a `B`.
    /// bus.publish_to(A_TOPIC, &B {}).await;
    /// # }
    /// ```
    pub async fn publish_to<E: Event>(
        &self,
        topic: Topic<E>,
        event: &E,
    ) -> Result<PublishAck, Error> {
        let trace = self.trace_context.then(|| Producer::single(topic.as_str()));
        let result = self
            .publish_traced(topic.as_str(), event, trace.as_ref())
            .await;
        if let Some(trace) = &trace {
            trace.finish(&result);
        }
        result
    }

    /// Publishes `event` on `topic` (a topic of its type), carrying the trace headers of `trace`.
    async fn publish_traced<E: Event>(
        &self,
        topic: &str,
        event: &E,
        trace: Option<&Producer>,
    ) -> Result<PublishAck, Error> {
        let started = Instant::now();
        let result = match &*self.backend {
            Backend::Memory(m) => match prepare(event, trace) {
                Ok((payload, headers)) => m.publish(topic, payload, headers).await,
                Err(e) => Err(e),
            },
            // Boxed: its future is large, and a publish future is built and moved on every
            // publish, memory ones included; one allocation is nothing beside a round trip.
            #[cfg(feature = "jetstream")]
            Backend::JetStream(j) => Box::pin(j.publish_event(topic, event, trace)).await,
        };
        self.record_publish(topic, started, &result);
        result
    }

    fn record_publish(&self, topic: &str, started: Instant, result: &Result<PublishAck, Error>) {
        let outcome = result.as_ref().map(|_| ());
        self.publish_metrics
            .publish(topic, started.elapsed(), outcome);
    }

    /// Publishes already-encoded bytes on `topic`, which is validated first. `headers` are sent
    /// as given, plus a generated `Nats-Msg-Id` if they have none and, with
    /// [`trace_context`](crate::EventBusConfig::trace_context), the trace headers if they have
    /// no `traceparent` (trace headers they have are kept); a header NATS cannot carry is an
    /// [`Error::InvalidHeader`] (see [`Headers::validate`]).
    pub async fn publish_raw(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        mut headers: Headers,
    ) -> Result<PublishAck, Error> {
        crate::topic::validate_topic(topic)?;
        headers.validate()?;
        if headers.get(headers::MSG_ID).is_none() {
            headers.insert(headers::MSG_ID, new_message_id());
        }
        // A `traceparent` the caller wrote is sent as it is, with no span of the bus's; other
        // trace headers of the caller's are kept beside the bus's `traceparent`.
        let trace = (self.trace_context && headers.get(headers::TRACEPARENT).is_none())
            .then(|| Producer::single(topic));
        if let Some(trace) = &trace {
            trace.message_id(headers.get(headers::MSG_ID).unwrap_or_default());
            trace.headers().write_to(&mut headers);
        }
        let started = Instant::now();
        let result = self.send(topic, payload.into(), headers).await;
        self.record_publish(topic, started, &result);
        if let Some(trace) = &trace {
            trace.finish(&result);
        }
        result
    }

    /// Publishes many events, keeping up to a window of publishes in flight instead of waiting
    /// for each acknowledgement in turn. Returns the acknowledgements in order, or
    /// [`Error::PartialBatch`] saying exactly which events are stored (publishing the others
    /// again is safe when the events have ids, since the server drops repeats). A batch that
    /// began before [`close`](Self::close) runs to its end.
    pub async fn publish_batch<'a, E, I>(&self, events: I) -> Result<Vec<PublishAck>, Error>
    where
        E: Event,
        I: IntoIterator<Item = &'a E>,
    {
        let topic = E::TOPIC.as_str();
        let trace = self.trace_context.then(|| Producer::batch(topic));
        let result = self
            .publish_batch_traced(topic, events.into_iter(), trace.as_ref())
            .await;
        if let Some(trace) = &trace {
            trace.finish(&result);
        }
        result
    }

    /// Publishes a batch, every event carrying the trace headers of `trace`.
    async fn publish_batch_traced<'a, E: Event>(
        &self,
        topic: &str,
        events: impl Iterator<Item = &'a E>,
        trace: Option<&Producer>,
    ) -> Result<Vec<PublishAck>, Error> {
        #[cfg(feature = "jetstream")]
        if let Backend::JetStream(j) = &*self.backend {
            let result = j.publish_events(topic, events, trace).await;
            self.record_batch(topic, &result);
            return result;
        }
        let mut acks = Vec::with_capacity(events.size_hint().0);
        for (i, event) in events.enumerate() {
            match self.publish_traced(topic, event, trace).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    let mut reached: Vec<_> = acks.into_iter().map(Some).collect();
                    reached.push(None);
                    return Err(Error::PartialBatch {
                        acks: reached,
                        failed: i,
                        source: Box::new(e),
                    });
                }
            }
        }
        Ok(acks)
    }

    /// Counts a JetStream batch's events (a memory batch counts each publish as it goes).
    #[cfg(feature = "jetstream")]
    fn record_batch(&self, topic: &str, result: &Result<Vec<PublishAck>, Error>) {
        let m = &self.publish_metrics;
        match result {
            Ok(acks) => m.publishes(topic, Ok(()), acks.len()),
            Err(e @ Error::PartialBatch { acks, .. }) => {
                let stored = acks.iter().flatten().count();
                m.publishes(topic, Ok(()), stored);
                m.publishes(topic, Err(e), acks.len() - stored);
            }
            Err(e) => m.publishes(topic, Err(e), 1),
        }
    }

    async fn send(
        &self,
        topic: &str,
        payload: Bytes,
        headers: Headers,
    ) -> Result<PublishAck, Error> {
        match &*self.backend {
            Backend::Memory(m) => m.publish(topic, payload, headers).await,
            // Boxed: its future is large, and a publish future is built and moved on every
            // publish, memory ones included; one allocation is nothing beside a round trip.
            #[cfg(feature = "jetstream")]
            Backend::JetStream(j) => Box::pin(j.publish(topic, payload, headers)).await,
        }
    }

    /// Starts delivering to a subscription: a [`Subscription`](crate::Subscription) or what
    /// `#[event_handler]` generates.
    pub async fn subscribe(&self, subscription: impl IntoSubscription) -> Result<(), Error> {
        let sub = subscription.into_subscription();
        match &*self.backend {
            Backend::Memory(m) => m.subscribe(sub).await,
            #[cfg(feature = "jetstream")]
            Backend::JetStream(j) => j.subscribe(sub).await,
        }
    }

    /// Subscribes several handlers; stops at the first error.
    pub async fn subscribe_all<S: IntoSubscription>(
        &self,
        subscriptions: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        for s in subscriptions {
            self.subscribe(s).await?;
        }
        Ok(())
    }

    /// Closes the bus: stops taking messages, waits (up to `drain_timeout`) for in-flight
    /// handlers to finish and settle their messages, flushes publishes and disconnects.
    /// Publishing or subscribing afterwards gives [`Error::Closed`]. Closing twice is harmless.
    pub async fn close(&self) -> Result<(), Error> {
        match &*self.backend {
            Backend::Memory(m) => m.close().await,
            #[cfg(feature = "jetstream")]
            Backend::JetStream(j) => j.close().await,
        }
    }

    /// Whether the bus can do its work now: unhealthy when closed or disconnected.
    pub async fn check(&self) -> Health {
        match &*self.backend {
            Backend::Memory(m) => m.health(),
            #[cfg(feature = "jetstream")]
            Backend::JetStream(j) => j.check().await,
        }
    }
}

#[cfg(feature = "jetstream")]
impl From<crate::jetstream::JetStreamBus> for EventBus {
    fn from(j: crate::jetstream::JetStreamBus) -> Self {
        EventBus {
            trace_context: j.config().trace_context,
            backend: Arc::new(Backend::JetStream(j)),
            publish_metrics: Arc::default(),
        }
    }
}

impl From<MemoryBus> for EventBus {
    fn from(m: MemoryBus) -> Self {
        EventBus {
            trace_context: m.config().trace_context,
            backend: Arc::new(Backend::Memory(m)),
            publish_metrics: Arc::default(),
        }
    }
}

/// The payload and headers of a publish of `event`: the encoded event, its id and type, and the
/// trace headers of `trace`.
fn prepare<E: Event>(event: &E, trace: Option<&Producer>) -> Result<(Bytes, Headers), Error> {
    let (payload, mut headers) = encode_event(event)?;
    if let Some(trace) = trace {
        trace.message_id(headers.get(headers::MSG_ID).unwrap_or_default());
        trace.headers().write_to(&mut headers);
    }
    Ok((payload, headers))
}
