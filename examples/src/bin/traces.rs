//! OpenTelemetry traces across two handlers (the `otel` feature of `bus`).
//!
//! ```text
//! cargo run -p examples --bin traces                      # memory backend
//! BUS_BACKEND=jetstream BUS_SERVERS=nats://127.0.0.1:4222 cargo run -p examples --bin traces
//! ```
//!
//! A request span (continuing an upstream caller's `traceparent`, with `tracestate` and baggage)
//! publishes an `OrderPlaced`; handler `risk` publishes a `PositionChanged`; handler `ledger`
//! receives it and prints the baggage it got. Then the example prints the spans it exported as a
//! tree: one trace, a producer span and a consumer span per hop.
//!
//! The setup is what a service does: a global propagator (W3C trace context and baggage), a
//! tracer provider, the `tracing-opentelemetry` layer, and `trace_context` on. Here the spans go
//! to the SDK's in-memory exporter so they can be printed; a service would give the provider an
//! OTLP exporter (`opentelemetry-otlp`) instead.

#![allow(clippy::print_stdout, reason = "the example prints the trace it made")]

use std::collections::HashMap;
use std::time::Duration;

use bus::{Delivery, Event, EventBus, EventBusConfig, HandlerError, Subscription};
use cqc::events::v1::{OrderPlaced, PositionChanged};
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanId, TracerProvider};
use opentelemetry::{Value, global};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What an upstream HTTP service would have sent along.
const UPSTREAM: [(&str, &str); 3] = [
    (
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ),
    ("tracestate", "vendor=upstream"),
    ("baggage", "tenant=acme"),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("traces-example")))
        // The example's own log lines: warnings and errors only, so the tree stands out.
        .with(tracing_subscriber::fmt::layer().with_filter(LevelFilter::WARN))
        .init();

    let mut config = EventBusConfig::cqc().with_env()?;
    config.trace_context = true;
    if config.consumer_name == EventBusConfig::default().consumer_name {
        config.consumer_name = "traces-example".into();
    }
    let bus = EventBus::connect(config).await?;
    let risk = bus.clone();
    bus.subscribe(Subscription::new("risk", OrderPlaced::TOPIC).handler(
        move |order: OrderPlaced| {
            let bus = risk.clone();
            async move {
                bus.publish(&PositionChanged {
                    event_id: format!("position-of-{}", order.event_id),
                    portfolio_id: order.portfolio_id,
                    ..Default::default()
                })
                .await?;
                Ok::<_, HandlerError>(())
            }
        },
    ))
    .await?;
    let (done, mut ledger_saw) = mpsc::channel(1);
    bus.subscribe(Subscription::new("ledger", PositionChanged::TOPIC).handler(
        move |_: PositionChanged, delivery: Delivery| {
            let baggage = delivery.headers().get("baggage").map(str::to_owned);
            let done = done.clone();
            async move {
                let _ = done.send(baggage).await;
                Ok::<_, HandlerError>(())
            }
        },
    ))
    .await?;

    let upstream: HashMap<String, String> = UPSTREAM
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let request = tracing::info_span!("handle HTTP POST /orders");
    request.set_parent(global::get_text_map_propagator(|p| p.extract(&upstream)))?;
    // A new id per run: JetStream drops a repeated id within its duplicate window.
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    bus.publish(&OrderPlaced {
        event_id: format!("order-{}", run.as_millis()),
        portfolio_id: "p-7".into(),
        ..Default::default()
    })
    .instrument(request.clone())
    .await?;
    drop(request);

    let baggage = tokio::time::timeout(Duration::from_secs(10), ledger_saw.recv())
        .await
        .map_err(|_| "the ledger handler did not receive the position within 10 s")?;
    println!("ledger received baggage {:?}\n", baggage.flatten());
    bus.close().await?;
    provider.force_flush()?;
    print_tree(&exporter.get_finished_spans()?);
    provider.shutdown()?;
    Ok(())
}

/// Prints `spans` as a tree under their parents, with their kind and messaging attributes.
fn print_tree(spans: &[SpanData]) {
    let mut traces: Vec<_> = Vec::new();
    for trace in spans.iter().map(|s| s.span_context.trace_id()) {
        if !traces.contains(&trace) {
            traces.push(trace);
        }
    }
    for trace in traces {
        println!("trace {trace}");
        let in_trace: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        let ids: Vec<SpanId> = in_trace.iter().map(|s| s.span_context.span_id()).collect();
        for root in in_trace.iter().filter(|s| !ids.contains(&s.parent_span_id)) {
            print_span(root, &in_trace, 1);
        }
    }
}

fn print_span(span: &SpanData, all: &[&SpanData], depth: usize) {
    let attribute = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    let mut line = format!(
        "{:indent$}{} [{:?}] span {}",
        "",
        span.name,
        span.span_kind,
        span.span_context.span_id(),
        indent = depth * 2
    );
    for key in [
        "messaging.message.id",
        "messaging.consumer.group.name",
        "messaging.nats.message.delivery_attempt",
    ] {
        match attribute(key) {
            Some(Value::String(v)) => line += &format!(" {key}={v}"),
            Some(other) => line += &format!(" {key}={other}"),
            None => {}
        }
    }
    println!("{line}");
    for child in all
        .iter()
        .filter(|s| s.parent_span_id == span.span_context.span_id())
    {
        print_span(child, all, depth + 1);
    }
}
