//! Trace context on events, and OpenTelemetry spans (feature `otel`).
//!
//! With [`EventBusConfig::trace_context`](crate::EventBusConfig::trace_context) on
//! (`BUS_TRACE_CONTEXT=true`; off by default), every published event carries W3C trace context.
//! An event published while a handler runs continues the trace of the event being handled, so a
//! chain of events across services reads as one trace; receivers that do not know the headers
//! ignore them.
//!
//! # Without `otel`: a light pass-through
//!
//! The bus reads the `traceparent` of each delivery and writes a child of it (same trace id, a
//! new parent id, same flags) on every event the handler publishes; an event published outside
//! a handler starts a new, sampled trace. No spans are made.
//!
//! # With `otel`: spans
//!
//! The bus makes `tracing` spans that `tracing-opentelemetry` exports as OpenTelemetry spans:
//! a producer span per publish (one per [`publish_batch`](crate::EventBus::publish_batch)) and a
//! consumer span per delivery (one per batch handler run, linked to each message's context).
//! Context is written and read by the global propagator
//! (`opentelemetry::global::set_text_map_propagator`): with W3C trace context and baggage, a
//! message carries `traceparent`, `tracestate` and `baggage`. The consumer span is a child of
//! the context the message carries, whoever published it; a producer span is a child of the
//! current span, so a publish inside a handler continues the handler's trace. Sampling is the
//! SDK's sampler's decision (with the default parent-based sampler, an unsampled caller stays
//! unsampled downstream).
//!
//! | | producer span | consumer span |
//! |---|---|---|
//! | name | `publish {topic}` | `process {topic}` |
//! | kind | producer | consumer |
//! | `messaging.system` | `nats` | `nats` |
//! | `messaging.operation.name` | `publish` | `process` |
//! | `messaging.operation.type` | `send` | `process` |
//! | `messaging.destination.name` | the topic | the topic |
//! | `messaging.message.id` | the message id (not for batches) | the message id |
//! | `messaging.batch.message_count` | batches | batch handlers |
//! | `messaging.consumer.group.name` | | the group |
//! | `messaging.message.body.size` | | payload bytes |
//! | `messaging.nats.message.delivery_attempt` | | 1 for the first delivery |
//! | `error.type`, error status | the publish error class | the handler's error class |
//!
//! The memory backend reports `messaging.system = nats` too: it keeps the same subjects and
//! headers, so queries and dashboards built on development traces hold in production.
//!
//! The spans have target `bus` and level `INFO`: a subscriber filter that drops them drops the
//! spans, not the context. Where no OpenTelemetry layer is installed (or the spans are
//! filtered out), the bus falls back to the light pass-through; where no propagator is set
//! (OpenTelemetry's default carries nothing), it still reads and writes `traceparent`. Either
//! way, turning the feature on never drops context between services.
//!
//! A service's setup, with `opentelemetry_sdk`, `tracing-subscriber` and `tracing-opentelemetry`
//! (the `traces` example runs it, exporting to memory and printing the tree):
//!
//! ```no_run
//! # async fn setup() -> Result<(), Box<dyn std::error::Error>> {
//! use opentelemetry::propagation::TextMapCompositePropagator;
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
//!     Box::new(TraceContextPropagator::new()),
//!     Box::new(BaggagePropagator::new()),
//! ]));
//! let provider = SdkTracerProvider::builder() /* .with_batch_exporter(your OTLP exporter) */
//!     .build();
//! tracing_subscriber::registry()
//!     .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("my-service")))
//!     .init();
//! let mut config = bus::EventBusConfig::from_env()?;
//! config.trace_context = true;
//! let bus = bus::EventBus::connect(config).await?;
//! # Ok(()) }
//! ```

#[cfg(feature = "otel")]
mod otel;

use std::borrow::Cow;
use std::future::Future;

use smallvec::SmallVec;

use crate::util::random_u64;
use crate::{Delivery, Error, HandlerError, Headers, RawMessage};

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// A parsed `traceparent`: version 00, trace id, parent (span) id, flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    pub(crate) flags: u8,
}

impl TraceParent {
    /// Parses `<2 hex>-<32 hex>-<16 hex>-<2 hex>` (a later version may add `-` fields, which are
    /// ignored); anything else, version `ff` or all-zero ids is `None`. Runs on every delivery
    /// with trace context, so it reads the fixed positions instead of splitting.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let b = s.trim().as_bytes();
        let dashes_at = |positions: &[usize]| positions.iter().all(|&i| b[i] == b'-');
        if b.len() < 55 || !dashes_at(&[2, 35, 52]) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        if hex(&b[..2])? == 0xff {
            return None;
        }
        let p = TraceParent {
            trace_id: u128::from(hex(&b[3..19])?) << 64 | u128::from(hex(&b[19..35])?),
            span_id: hex(&b[36..52])?,
            flags: u8::try_from(hex(&b[53..55])?).ok()?,
        };
        (p.trace_id != 0 && p.span_id != 0).then_some(p)
    }

    /// A new trace, sampled.
    fn root() -> Self {
        TraceParent {
            trace_id: (u128::from(random()) << 64) | u128::from(random()),
            span_id: random(),
            flags: 1,
        }
    }

    /// The same trace with a new parent id.
    fn child(&self) -> Self {
        TraceParent {
            span_id: random(),
            ..*self
        }
    }

    /// The header value: `00-<trace id>-<parent id>-<flags>`, lowercase hex.
    pub(crate) fn to_header(self) -> String {
        let mut out = [b'-'; 55];
        out[..2].copy_from_slice(b"00");
        write_hex(&mut out[3..35], self.trace_id);
        write_hex(&mut out[36..52], u128::from(self.span_id));
        write_hex(&mut out[53..55], u128::from(self.flags));
        String::from_utf8(out.to_vec()).expect("hex digits and dashes are ASCII")
    }
}

/// The value of at most 16 hex digits (either case); `None` for anything else.
fn hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some(n << 4 | u64::from(v))
    })
}

/// Writes the low `out.len()` hex digits of `n` into `out`, lowercase.
fn write_hex(out: &mut [u8], mut n: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for d in out.iter_mut().rev() {
        *d = DIGITS[(n & 0xf) as usize];
        n >>= 4;
    }
}

/// A non-zero random 64-bit id.
fn random() -> u64 {
    random_u64().max(1)
}

/// The `traceparent` for an event published now: a child of the event being handled by this
/// task, or a new trace.
fn light_outgoing() -> String {
    CURRENT
        .try_with(TraceParent::child)
        .unwrap_or_else(|_| TraceParent::root())
        .to_header()
}

/// The trace id of the trace a handler of `delivery` runs in: the current OpenTelemetry span's
/// (with `otel`, called inside the consumer span), else the one its `traceparent` carries.
pub(crate) fn trace_id(delivery: &Delivery) -> Option<u128> {
    #[cfg(feature = "otel")]
    if let Some(id) = otel::current_trace_id() {
        return Some(id);
    }
    delivery
        .headers()
        .get(crate::headers::TRACEPARENT)
        .and_then(TraceParent::parse)
        .map(|p| p.trace_id)
}

/// The trace headers of one outgoing message, in the order they are written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TraceHeaders(SmallVec<[(Cow<'static, str>, String); 1]>);

impl TraceHeaders {
    /// Only a `traceparent`.
    fn traceparent(value: String) -> Self {
        TraceHeaders(smallvec::smallvec![(
            Cow::Borrowed(crate::headers::TRACEPARENT),
            value
        )])
    }

    /// The headers as name and value.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_str()))
    }

    /// Writes them into `headers`, except those `headers` already has: a trace header the
    /// publisher set itself (a `baggage` of its own, say) wins.
    pub(crate) fn write_to(self, headers: &mut Headers) {
        for (name, value) in self.0 {
            // Absent, so an append: one scan of the headers, as the `insert` it replaced.
            if headers.get(&name).is_none() {
                headers.append(name, value);
            }
        }
    }

    /// Their size in a NATS header block.
    pub(crate) fn wire_len(&self) -> usize {
        self.iter()
            .map(|(n, v)| crate::headers::header_line_len(n, v))
            .sum()
    }
}

/// The trace side of one publish, or of one batch of publishes: with `otel`, a producer span,
/// ended when this is dropped.
pub(crate) struct Producer {
    /// Boxed: a publish future holds an `Option<Producer>`, and keeping it at one pointer keeps
    /// publishes with tracing off as small as without the feature.
    #[cfg(feature = "otel")]
    span: Box<tracing::Span>,
    #[cfg(feature = "otel")]
    batch: bool,
}

impl Producer {
    /// Starts the trace of a publish on `topic`.
    pub(crate) fn single(topic: &str) -> Self {
        Self::start(topic, false)
    }

    /// Starts the trace of a batch of publishes on `topic`, all carrying its context.
    pub(crate) fn batch(topic: &str) -> Self {
        Self::start(topic, true)
    }

    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    fn start(topic: &str, batch: bool) -> Self {
        Producer {
            #[cfg(feature = "otel")]
            span: Box::new(otel::producer_span(topic)),
            #[cfg(feature = "otel")]
            batch,
        }
    }

    /// The trace headers each message of this publish carries.
    pub(crate) fn headers(&self) -> TraceHeaders {
        #[cfg(feature = "otel")]
        if let Some(headers) = otel::inject(&self.span) {
            return headers;
        }
        TraceHeaders::traceparent(light_outgoing())
    }

    /// Records the message id (of a single publish; a batch has many).
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn message_id(&self, id: &str) {
        #[cfg(feature = "otel")]
        if !self.batch {
            self.span.record("messaging.message.id", id);
        }
    }

    /// Records how the publish ended (and, for a batch, how many messages it sent).
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn finish<T: Sent>(&self, result: &Result<T, Error>) {
        #[cfg(feature = "otel")]
        {
            if self.batch {
                let sent = match result {
                    Ok(acks) => acks.count(),
                    Err(Error::PartialBatch { acks, .. }) => acks.len(),
                    Err(_) => 0,
                };
                self.span
                    .record("messaging.batch.message_count", otel::as_i64(sent));
            }
            if let Err(e) = result {
                otel::failed(&self.span, crate::telemetry::publish_error_class(e), e);
            }
        }
    }
}

/// What a publish returns: how many messages it sent.
pub(crate) trait Sent {
    /// The number of messages.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    fn count(&self) -> usize;
}

impl Sent for crate::PublishAck {
    fn count(&self) -> usize {
        1
    }
}

impl Sent for Vec<crate::PublishAck> {
    fn count(&self) -> usize {
        self.len()
    }
}

/// The trace a handler runs in: the delivery's trace context and, with `otel`, a consumer span,
/// ended when this is dropped.
pub(crate) struct Consumer {
    parent: Option<TraceParent>,
    /// Boxed and optional: every delivery holds a `Consumer`, and one pointer keeps deliveries
    /// with tracing off as small as without the feature.
    #[cfg(feature = "otel")]
    span: Option<Box<tracing::Span>>,
}

impl Consumer {
    /// No trace (`trace_context` off).
    pub(crate) fn none() -> Self {
        Consumer {
            parent: None,
            #[cfg(feature = "otel")]
            span: None,
        }
    }

    /// The trace of a delivery of a `payload_len`-byte message.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn of(delivery: &Delivery, payload_len: usize) -> Self {
        let parent = delivery
            .headers()
            .get(crate::headers::TRACEPARENT)
            .and_then(TraceParent::parse);
        Consumer {
            parent,
            #[cfg(feature = "otel")]
            span: Some(Box::new(otel::consumer_span(delivery, payload_len))),
        }
    }

    /// The trace of a batch handler's run over `messages`: with `otel`, one span linked to the
    /// context of each message; without, none (a batch has no single parent).
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn batch(messages: &[RawMessage]) -> Self {
        Consumer {
            parent: None,
            #[cfg(feature = "otel")]
            span: Some(Box::new(otel::batch_span(messages))),
        }
    }

    /// Runs `fut` (a handler) inside this trace.
    pub(crate) async fn run<F: Future>(&self, fut: F) -> F::Output {
        #[cfg(feature = "otel")]
        let span = self
            .span
            .as_deref()
            .map_or_else(tracing::Span::none, Clone::clone);
        #[cfg(feature = "otel")]
        let fut = tracing::Instrument::instrument(fut, span);
        match self.parent {
            Some(parent) => CURRENT.scope(parent, fut).await,
            None => fut.await,
        }
    }

    /// Runs `f` (one poll of a handler) inside this trace.
    pub(crate) fn run_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "otel")]
        let _entered = self.span.as_deref().map(tracing::Span::enter);
        match self.parent {
            Some(parent) => CURRENT.sync_scope(parent, f),
            None => f(),
        }
    }

    /// Records how the handler ended.
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn finish(&self, outcomes: &[Result<(), HandlerError>]) {
        #[cfg(feature = "otel")]
        if let Some(span) = &self.span
            && let Some(Err(e)) = outcomes.iter().find(|o| o.is_err())
        {
            otel::failed(span, e.class().as_str(), e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(s).unwrap();
        assert_eq!(p.to_header(), s);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // Upper case is read; a later version's extra fields are ignored.
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
        assert_eq!(TraceParent::parse(upper), Some(p));
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        assert_eq!(TraceParent::parse(later), Some(p));
        let low = TraceParent {
            trace_id: 1,
            span_id: 2,
            flags: 0,
        };
        assert_eq!(
            low.to_header(),
            "00-00000000000000000000000000000001-0000000000000002-00"
        );
    }

    #[tokio::test]
    async fn children_keep_the_trace() {
        let outgoing = || light_outgoing();
        let root = TraceParent::parse(&outgoing()).unwrap();
        let child = CURRENT.scope(root, async { outgoing() }).await;
        let child = TraceParent::parse(&child).unwrap();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        let other = TraceParent::parse(&outgoing()).unwrap();
        assert_ne!(other.trace_id, root.trace_id);
    }
}

/// The light pass-through through a real bus (built without `otel` in `cargo test -p bus`, and
/// with it but no OpenTelemetry layer in the workspace's run).
#[cfg(test)]
mod through_the_bus {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::TraceParent;
    use crate::{
        Delivery, Event, EventBus, EventBusConfig, HandlerError, Headers, Subscription, Topic,
    };

    #[derive(Clone, PartialEq, prost::Message)]
    struct Asked {
        #[prost(uint32, tag = "1")]
        n: u32,
    }

    impl Event for Asked {
        const TOPIC: Topic<Self> = Topic::new("test.events.v1.asked");
        const EVENT_TYPE: &'static str = "asked";
        const FULL_NAME: &'static str = "test.events.v1.Asked";
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Answered {
        #[prost(uint32, tag = "1")]
        n: u32,
    }

    impl Event for Answered {
        const TOPIC: Topic<Self> = Topic::new("test.events.v1.answered");
        const EVENT_TYPE: &'static str = "answered";
        const FULL_NAME: &'static str = "test.events.v1.Answered";
    }

    /// A memory bus where `relay` answers each `Asked` and the headers of each `Answered` come
    /// out of the returned channel.
    async fn relay() -> (EventBus, mpsc::Receiver<Headers>) {
        let mut config = EventBusConfig::memory();
        config.trace_context = true;
        let bus = EventBus::connect(config).await.unwrap();
        let onward = bus.clone();
        bus.subscribe(
            Subscription::new("relay", Asked::TOPIC).handler(move |e: Asked| {
                let bus = onward.clone();
                async move {
                    bus.publish(&Answered { n: e.n }).await?;
                    Ok::<_, HandlerError>(())
                }
            }),
        )
        .await
        .unwrap();
        let (tx, rx) = mpsc::channel(4);
        bus.subscribe(Subscription::new("sink", Answered::TOPIC).handler(
            move |_: Answered, d: Delivery| {
                let tx = tx.clone();
                async move {
                    tx.send(d.headers().clone()).await.unwrap();
                    Ok::<_, HandlerError>(())
                }
            },
        ))
        .await
        .unwrap();
        (bus, rx)
    }

    async fn next(rx: &mut mpsc::Receiver<Headers>) -> Headers {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the answer within 10 s")
            .unwrap()
    }

    fn traceparent(headers: &Headers) -> TraceParent {
        TraceParent::parse(headers.get(crate::headers::TRACEPARENT).unwrap()).unwrap()
    }

    /// What a handler publishes continues the trace of the delivery it handles, with its
    /// sampling flag, and a trace header of the publisher's own is kept.
    #[tokio::test]
    async fn a_publish_in_a_handler_continues_the_trace() {
        let (bus, mut rx) = relay().await;
        for flags in ["01", "00"] {
            let upstream = format!("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}");
            let mut headers = Headers::new();
            headers.insert(crate::headers::TRACEPARENT, upstream.clone());
            let payload = prost::Message::encode_to_vec(&Asked { n: 1 });
            bus.publish_raw(Asked::TOPIC.as_str(), payload, headers)
                .await
                .unwrap();
            let onward = traceparent(&next(&mut rx).await);
            let upstream = TraceParent::parse(&upstream).unwrap();
            assert_eq!(onward.trace_id, upstream.trace_id);
            assert_eq!(onward.flags, upstream.flags);
            assert_ne!(onward.span_id, upstream.span_id);
        }

        // No `traceparent` of the caller's: a new trace, and the caller's `baggage` stays.
        let mut headers = Headers::new();
        headers.insert("baggage", "tenant=acme");
        let payload = prost::Message::encode_to_vec(&Answered { n: 2 });
        bus.publish_raw(Answered::TOPIC.as_str(), payload, headers)
            .await
            .unwrap();
        let got = next(&mut rx).await;
        assert_eq!(got.get("baggage"), Some("tenant=acme"));
        assert_eq!(traceparent(&got).flags, 1);
        assert_eq!(got.get("tracestate"), None, "no empty `tracestate`");
        bus.close().await.unwrap();
    }
}
