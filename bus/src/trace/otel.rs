//! OpenTelemetry spans and context propagation (the `otel` feature; see the parent module).
//!
//! Spans are `tracing` spans with the fields `tracing-opentelemetry` turns into OpenTelemetry
//! span names (`otel.name`), kinds (`otel.kind`) and attributes.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, global};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{TraceHeaders, TraceParent};
use crate::{Delivery, Headers, RawMessage};

/// The value of `messaging.system`: both backends speak NATS subjects and headers.
const SYSTEM: &str = "nats";

/// A producer span for a publish on `topic`, a child of the current span.
pub(super) fn producer_span(topic: &str) -> Span {
    tracing::info_span!(
        target: "bus",
        "publish",
        otel.name = format_args!("publish {topic}").to_string(),
        otel.kind = "producer",
        messaging.system = SYSTEM,
        "messaging.operation.name" = "publish",
        "messaging.operation.type" = "send",
        messaging.destination.name = topic,
        messaging.message.id = Empty,
        messaging.batch.message_count = Empty,
    )
}

/// A consumer span for the deliveries of `delivery`'s subscription, with the attributes of
/// one message or of a batch left to record.
fn process_span(delivery: &Delivery) -> Span {
    let topic = delivery.topic();
    tracing::info_span!(
        target: "bus",
        "process",
        otel.name = format_args!("process {topic}").to_string(),
        otel.kind = "consumer",
        messaging.system = SYSTEM,
        "messaging.operation.name" = "process",
        "messaging.operation.type" = "process",
        messaging.destination.name = topic,
        messaging.consumer.group.name = delivery.group(),
        messaging.message.id = Empty,
        messaging.message.body.size = Empty,
        messaging.nats.message.delivery_attempt = Empty,
        messaging.batch.message_count = Empty,
    )
}

/// A consumer span for a delivery, a child of the context its headers carry.
pub(super) fn consumer_span(delivery: &Delivery, payload_len: usize) -> Span {
    let span = process_span(delivery);
    if span.is_disabled() {
        // No subscriber wants it (none installed, or filtered out): the light pass-through
        // carries the context, and nothing here needs reading.
        return span;
    }
    let parent = extract(delivery.headers());
    if parent.span().span_context().is_valid() {
        // Fails only where no OpenTelemetry layer is installed: then there is no span to parent.
        let _ = span.set_parent(parent);
    }
    if let Some(id) = delivery.event_id() {
        span.record("messaging.message.id", id);
    }
    span.record("messaging.message.body.size", as_i64(payload_len));
    span.record(
        "messaging.nats.message.delivery_attempt",
        i64::from(delivery.attempt()),
    );
    span
}

/// A consumer span for a batch handler's run: a new trace, linked to each message's context.
pub(super) fn batch_span(messages: &[RawMessage]) -> Span {
    let Some(first) = messages.first() else {
        return Span::none();
    };
    let span = process_span(&first.delivery);
    if span.is_disabled() {
        return span;
    }
    span.record("messaging.batch.message_count", as_i64(messages.len()));
    for message in messages {
        let cx = extract(message.headers());
        span.add_link(cx.span().span_context().clone());
    }
    span
}

/// A count as an attribute value: `tracing-opentelemetry` keeps signed integers as numbers and
/// turns unsigned ones into text.
pub(super) fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Marks `span` failed with `class`.
pub(super) fn failed(span: &Span, class: &'static str, error: &dyn std::fmt::Display) {
    span.set_attribute("error.type", class);
    span.set_status(Status::error(error.to_string()));
}

/// The trace headers for a message published within `span`, or `None` when `span` has no
/// OpenTelemetry context (no layer installed, or the span is filtered out).
pub(super) fn inject(span: &Span) -> Option<TraceHeaders> {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    let mut headers = TraceHeaders::default();
    global::get_text_map_propagator(|propagator| {
        if carries_nothing(propagator) {
            headers = TraceHeaders::traceparent(traceparent_of(&span_context).to_header());
        } else {
            propagator.inject_context(&cx, &mut Inject(&mut headers));
        }
    });
    Some(headers)
}

/// The trace id of the current span, if it has an OpenTelemetry context.
pub(super) fn current_trace_id() -> Option<u128> {
    let cx = Span::current().context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| u128::from_be_bytes(span_context.trace_id().to_bytes()))
}

/// The context `headers` carry, read by the global propagator (or, with none installed, from
/// `traceparent`).
fn extract(headers: &Headers) -> Context {
    global::get_text_map_propagator(|propagator| {
        if carries_nothing(propagator) {
            let parent = headers
                .get(crate::headers::TRACEPARENT)
                .and_then(TraceParent::parse);
            match parent {
                Some(parent) => Context::new().with_remote_span_context(span_context_of(parent)),
                None => Context::new(),
            }
        } else {
            propagator.extract(&Extract(headers))
        }
    })
}

/// Whether `propagator` carries no field (OpenTelemetry's default, a no-op).
fn carries_nothing(propagator: &dyn TextMapPropagator) -> bool {
    propagator.fields().next().is_none()
}

fn traceparent_of(cx: &SpanContext) -> TraceParent {
    TraceParent {
        trace_id: u128::from_be_bytes(cx.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(cx.span_id().to_bytes()),
        flags: cx.trace_flags().to_u8(),
    }
}

fn span_context_of(parent: TraceParent) -> SpanContext {
    SpanContext::new(
        TraceId::from(parent.trace_id),
        SpanId::from(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        TraceState::default(),
    )
}

/// Writes what a propagator injects into the outgoing message's trace headers.
struct Inject<'a>(&'a mut TraceHeaders);

impl Injector for Inject<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.0.retain(|(n, _)| !n.eq_ignore_ascii_case(key));
        // The W3C propagator sets `tracestate` even when it is empty; an empty header is bytes
        // on every message for nothing.
        if value.is_empty() {
            return;
        }
        let name = match key {
            crate::headers::TRACEPARENT => crate::headers::TRACEPARENT.into(),
            "tracestate" => "tracestate".into(),
            "baggage" => "baggage".into(),
            other => other.to_owned().into(),
        };
        self.0.0.push((name, value));
    }
}

/// Reads a propagator's fields from a message's headers (names in any case).
struct Extract<'a>(&'a Headers);

impl Extractor for Extract<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip() {
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(traceparent_of(&span_context_of(tp)), tp);
    }

    #[test]
    fn without_a_propagator_traceparent_is_read() {
        let mut headers = Headers::new();
        headers.insert(
            "Traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        );
        let cx = extract(&headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && !sc.is_sampled());
        assert_eq!(
            traceparent_of(&sc).to_header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }
}
