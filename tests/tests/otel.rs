//! OpenTelemetry traces (the `otel` feature), on both backends: spans exported by the SDK's
//! in-memory exporter, context carried by the W3C trace-context and baggage propagators.
//!
//! One tracing subscriber, propagator and exporter serve the whole binary; each test finds its
//! own spans by trace id.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bus::testing::NatsServer;
use bus::{
    Delivery, Event, EventBus, EventBusConfig, HandlerError, Headers, Subscription, headers,
};
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, TracerProvider};
use opentelemetry::{Context, Value, global};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tests::Recorder;
use tests::events::{Ping, Pong};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(10);

/// The exporter every span of this binary goes to, installed once with the global subscriber
/// and propagator a service would install.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bus-tests")));
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        exporter
    })
}

/// A trace id no other test uses.
fn new_trace_id() -> TraceId {
    static N: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    TraceId::from(
        (u128::from(N.fetch_add(1, Ordering::Relaxed)) << 64)
            | nanos.as_nanos() & 0xffff_ffff_ffff_ffff,
    )
}

/// A `traceparent` of an upstream service: a new trace, span `span`, sampled or not.
fn foreign_traceparent(span: u64, sampled: bool) -> (String, TraceId) {
    let trace = new_trace_id();
    let flags = if sampled { "01" } else { "00" };
    (format!("00-{trace}-{span:016x}-{flags}"), trace)
}

/// The context an upstream service hands over: its span, `tracestate` and baggage.
fn upstream() -> (Context, TraceId, SpanId) {
    let (traceparent, trace) = foreign_traceparent(0x00f0_67aa_0ba9_02b7, true);
    let carrier = HashMap::from([
        ("traceparent".to_owned(), traceparent),
        ("tracestate".to_owned(), "vendor=upstream".to_owned()),
        ("baggage".to_owned(), "tenant=acme".to_owned()),
    ]);
    let cx = global::get_text_map_propagator(|p| p.extract(&carrier));
    let span = cx.span().span_context().span_id();
    (cx, trace, span)
}

/// The finished spans of `trace`, once there are `n` (fails with what there is after `WAIT`).
async fn spans(trace: TraceId, n: usize) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found: Vec<SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect();
        if found.len() >= n {
            assert_eq!(found.len(), n, "{:#?}", names(&found));
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} spans of trace {trace} expected within {WAIT:?}; finished: {:?}",
            names(&found)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn names(spans: &[SpanData]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

/// The one span named `name` (several: the one whose parent is `parent`).
fn span<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span in {:?}", names(spans));
    found[0]
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn string(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(Value::String(s)) => s.to_string(),
        other => panic!("`{key}` of `{}`: {other:?}", span.name),
    }
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attr(span, key) {
        Some(Value::I64(n)) => n,
        other => panic!("`{key}` of `{}`: {other:?}", span.name),
    }
}

fn is_child(child: &SpanData, parent: &SpanData) {
    assert_eq!(
        child.parent_span_id,
        parent.span_context.span_id(),
        "`{}` is a child of `{}`",
        child.name,
        parent.name
    );
}

/// Checks the messaging attributes of a producer span and a consumer span of one message.
fn check_hop(producer: &SpanData, consumer: &SpanData, topic: &str, id: &str, group: &str) {
    assert_eq!(producer.span_kind, SpanKind::Producer);
    assert_eq!(consumer.span_kind, SpanKind::Consumer);
    is_child(consumer, producer);
    assert!(consumer.parent_span_is_remote, "the parent came in headers");
    for span in [producer, consumer] {
        assert_eq!(string(span, "messaging.system"), "nats");
        assert_eq!(string(span, "messaging.destination.name"), topic);
        assert_eq!(string(span, "messaging.message.id"), id);
        assert_eq!(span.status, Status::Unset, "{}", span.name);
    }
    assert_eq!(string(producer, "messaging.operation.name"), "publish");
    assert_eq!(string(producer, "messaging.operation.type"), "send");
    assert_eq!(string(consumer, "messaging.operation.name"), "process");
    assert_eq!(string(consumer, "messaging.operation.type"), "process");
    assert_eq!(string(consumer, "messaging.consumer.group.name"), group);
    assert_eq!(int(consumer, "messaging.nats.message.delivery_attempt"), 1);
    assert!(int(consumer, "messaging.message.body.size") > 0);
}

/// A memory bus with trace context on.
async fn memory() -> (EventBus, Option<NatsServer>) {
    exporter();
    let mut config = EventBusConfig::memory().with_cqc_conventions();
    config.trace_context = true;
    (EventBus::connect(config).await.unwrap(), None)
}

/// A JetStream bus with trace context on, on its own server.
async fn jetstream() -> (EventBus, Option<NatsServer>) {
    exporter();
    let server = NatsServer::start().await;
    let mut config = server.bus_config();
    config.trace_context = true;
    let bus = EventBus::connect(config).await.unwrap();
    (bus, Some(server))
}

/// Handler `relay` answers each `Ping` with a `Pong`; handler `sink` records the headers of
/// each `Pong`.
async fn relay_and_sink(bus: &EventBus) -> std::sync::Arc<Recorder<Headers>> {
    let relay = bus.clone();
    bus.subscribe(
        Subscription::new("relay", Ping::TOPIC).handler(move |ping: Ping| {
            let bus = relay.clone();
            async move {
                bus.publish(&Pong { seq: ping.seq }).await?;
                Ok::<_, HandlerError>(())
            }
        }),
    )
    .await
    .unwrap();
    let seen = Recorder::new();
    let sink = std::sync::Arc::clone(&seen);
    bus.subscribe(
        Subscription::new("sink", Pong::TOPIC).handler(move |_: Pong, d: Delivery| {
            sink.push(d.headers().clone());
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .await
    .unwrap();
    seen
}

/// Handler A publishes, handler B receives: one trace from the upstream caller to B, each hop
/// a producer span and its consumer child, `tracestate` and baggage carried to the end.
async fn a_chain_of_handlers_is_one_trace((bus, _server): (EventBus, Option<NatsServer>)) {
    let seen = relay_and_sink(&bus).await;
    let (upstream, trace, upstream_span) = upstream();
    let request = tracing::info_span!("request");
    request.set_parent(upstream).unwrap();
    bus.publish(&Ping::new(1))
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);
    seen.wait_for(1, WAIT).await;

    let all = spans(trace, 5).await;
    let request = span(&all, "request");
    assert_eq!(request.parent_span_id, upstream_span);
    let publish_ping = span(&all, &format!("publish {}", Ping::TOPIC));
    let process_ping = span(&all, &format!("process {}", Ping::TOPIC));
    let publish_pong = span(&all, &format!("publish {}", Pong::TOPIC));
    let process_pong = span(&all, &format!("process {}", Pong::TOPIC));
    is_child(publish_ping, request);
    check_hop(
        publish_ping,
        process_ping,
        Ping::TOPIC.as_str(),
        "ping-1",
        "service-relay",
    );
    is_child(publish_pong, process_ping);
    let pong_id = string(publish_pong, "messaging.message.id");
    check_hop(
        publish_pong,
        process_pong,
        Pong::TOPIC.as_str(),
        &pong_id,
        "service-sink",
    );
    for span in &all {
        assert_eq!(
            span.span_context.trace_state().header(),
            "vendor=upstream",
            "{}",
            span.name
        );
    }

    let headers = &seen.items()[0];
    let traceparent = headers.get(headers::TRACEPARENT).unwrap();
    assert_eq!(
        traceparent,
        format!("00-{trace}-{}-01", publish_pong.span_context.span_id())
    );
    assert_eq!(headers.get("tracestate"), Some("vendor=upstream"));
    assert_eq!(headers.get("baggage"), Some("tenant=acme"));
    bus.close().await.unwrap();
}

/// A failed delivery's span has error status and the error class; the retry is a span of its
/// own with the next attempt number.
async fn failures_are_marked((bus, _server): (EventBus, Option<NatsServer>)) {
    let attempts = Recorder::<u32>::new();
    let seen = std::sync::Arc::clone(&attempts);
    bus.subscribe(
        Subscription::new("flaky", Ping::TOPIC)
            .backoff(vec![Duration::from_millis(10)])
            .handler(move |_: Ping, d: Delivery| {
                seen.push(d.attempt());
                let attempt = d.attempt();
                async move {
                    match attempt {
                        1 => Err(HandlerError::retryable("not yet")),
                        _ => Err(HandlerError::permanent("never")),
                    }
                }
            }),
    )
    .await
    .unwrap();
    let root = tracing::info_span!("root");
    bus.publish(&Ping::new(7))
        .instrument(root.clone())
        .await
        .unwrap();
    let trace = root.context().span().span_context().trace_id();
    drop(root);
    attempts.wait_for(2, WAIT).await;

    let all = spans(trace, 4).await;
    let processed: Vec<&SpanData> = all
        .iter()
        .filter(|s| s.span_kind == SpanKind::Consumer)
        .collect();
    assert_eq!(processed.len(), 2);
    let publish = span(&all, &format!("publish {}", Ping::TOPIC));
    for (span, (attempt, class, message)) in processed
        .iter()
        .zip([(1, "retryable", "not yet"), (2, "permanent", "never")])
    {
        is_child(span, publish);
        assert_eq!(
            int(span, "messaging.nats.message.delivery_attempt"),
            attempt
        );
        assert_eq!(string(span, "error.type"), class);
        match &span.status {
            Status::Error { description } => assert!(description.contains(message)),
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
    bus.close().await.unwrap();
}

/// A batch publish is one producer span; every event of it carries its context.
async fn a_batch_is_one_producer_span((bus, _server): (EventBus, Option<NatsServer>)) {
    let handled = Recorder::<String>::new();
    let seen = std::sync::Arc::clone(&handled);
    bus.subscribe(
        Subscription::new("batch", Ping::TOPIC).handler(move |p: Ping| {
            seen.push(p.event_id);
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .await
    .unwrap();
    let root = tracing::info_span!("root");
    let events: Vec<Ping> = (1..=3).map(Ping::new).collect();
    bus.publish_batch(&events)
        .instrument(root.clone())
        .await
        .unwrap();
    let trace = root.context().span().span_context().trace_id();
    drop(root);
    handled.wait_for(3, WAIT).await;

    let all = spans(trace, 5).await;
    let publish = span(&all, &format!("publish {}", Ping::TOPIC));
    assert_eq!(int(publish, "messaging.batch.message_count"), 3);
    assert_eq!(attr(publish, "messaging.message.id"), None);
    let mut ids: Vec<String> = all
        .iter()
        .filter(|s| s.span_kind == SpanKind::Consumer)
        .map(|s| {
            is_child(s, publish);
            string(s, "messaging.message.id")
        })
        .collect();
    ids.sort();
    assert_eq!(ids, ["ping-1", "ping-2", "ping-3"]);
    bus.close().await.unwrap();
}

/// Publishes a `Ping` with only the headers a service without this bus would send (its own
/// `traceparent`): on JetStream with plain async-nats, on memory with `publish_raw`.
async fn publish_foreign(bus: &EventBus, server: Option<&NatsServer>, traceparent: &str) {
    let payload = prost::Message::encode_to_vec(&Ping::new(9));
    match server {
        Some(server) => {
            let client = async_nats::connect(server.url()).await.unwrap();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("traceparent", traceparent);
            async_nats::jetstream::new(client)
                .publish_with_headers(Ping::TOPIC.as_str(), headers, payload.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        None => {
            let mut headers = Headers::new();
            headers.insert(headers::TRACEPARENT, traceparent.to_owned());
            bus.publish_raw(Ping::TOPIC.as_str(), payload, headers)
                .await
                .unwrap();
        }
    }
}

/// A foreign publisher's `traceparent` is the parent of the delivery's span, and of what the
/// handler publishes.
async fn a_foreign_traceparent_is_the_parent((bus, server): (EventBus, Option<NatsServer>)) {
    let seen = relay_and_sink(&bus).await;
    let (traceparent, trace) = foreign_traceparent(0x1234_5678_9abc_def0, true);
    publish_foreign(&bus, server.as_ref(), &traceparent).await;
    seen.wait_for(1, WAIT).await;

    let all = spans(trace, 3).await;
    let process_ping = span(&all, &format!("process {}", Ping::TOPIC));
    assert_eq!(
        process_ping.parent_span_id,
        SpanId::from(0x1234_5678_9abc_def0)
    );
    assert!(process_ping.parent_span_is_remote);
    let publish_pong = span(&all, &format!("publish {}", Pong::TOPIC));
    is_child(publish_pong, process_ping);
    // The W3C propagator's empty `tracestate` is not sent.
    assert_eq!(seen.items()[0].get("tracestate"), None);
    bus.close().await.unwrap();
}

/// An upstream decision not to sample is kept: no spans are exported, and what the handler
/// publishes carries the same trace, still not sampled.
async fn an_unsampled_trace_stays_unsampled((bus, server): (EventBus, Option<NatsServer>)) {
    let seen = relay_and_sink(&bus).await;
    let (traceparent, trace) = foreign_traceparent(0x0bad_cafe_0bad_cafe, false);
    publish_foreign(&bus, server.as_ref(), &traceparent).await;
    seen.wait_for(1, WAIT).await;
    bus.close().await.unwrap();

    let onward = seen.items()[0]
        .get(headers::TRACEPARENT)
        .unwrap()
        .to_owned();
    assert!(
        onward.starts_with(&format!("00-{trace}-")) && onward.ends_with("-00"),
        "{onward}"
    );
    let exported = exporter()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .count();
    assert_eq!(exported, 0);
}

/// A batch handler's run is one consumer span of its own trace, linked to the context of each
/// message in the batch.
async fn a_batch_handler_run_links_its_messages((bus, _server): (EventBus, Option<NatsServer>)) {
    let sizes = Recorder::<usize>::new();
    let seen = std::sync::Arc::clone(&sizes);
    bus.subscribe(Subscription::new("batched", Ping::TOPIC).batch_handler(
        bus::BatchOptions::new(3, Duration::from_secs(5)),
        move |events: Vec<Ping>| {
            seen.push(events.len());
            let outcomes: Vec<Result<(), HandlerError>> = events.iter().map(|_| Ok(())).collect();
            async move { outcomes }
        },
    ))
    .await
    .unwrap();
    let root = tracing::info_span!("root");
    for seq in 1..=3 {
        bus.publish(&Ping::new(seq))
            .instrument(root.clone())
            .await
            .unwrap();
    }
    let trace = root.context().span().span_context().trace_id();
    drop(root);
    sizes
        .wait_until(WAIT, "3 events handled", |s| s.iter().sum::<usize>() == 3)
        .await;
    let published: Vec<SpanId> = spans(trace, 4)
        .await
        .iter()
        .filter(|s| s.span_kind == SpanKind::Producer)
        .map(|s| s.span_context.span_id())
        .collect();
    assert_eq!(published.len(), 3);

    // The runs' spans: consumer spans of other traces whose links reach this one.
    let deadline = tokio::time::Instant::now() + WAIT;
    let runs = loop {
        let runs: Vec<SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.links.iter().any(|l| l.span_context.trace_id() == trace))
            .collect();
        let linked: usize = runs.iter().map(|s| s.links.len()).sum();
        if linked >= 3 {
            break runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch spans linked to {trace}: {:?}",
            names(&runs)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut linked = Vec::new();
    for run in &runs {
        assert_eq!(run.name, format!("process {}", Ping::TOPIC));
        assert_eq!(run.span_kind, SpanKind::Consumer);
        assert_ne!(
            run.span_context.trace_id(),
            trace,
            "a run starts its own trace"
        );
        assert_eq!(
            string(run, "messaging.consumer.group.name"),
            "service-batched"
        );
        assert_eq!(
            int(run, "messaging.batch.message_count"),
            i64::try_from(run.links.len()).unwrap()
        );
        linked.extend(run.links.iter().map(|l| l.span_context.span_id()));
    }
    linked.sort_by_key(|id| id.to_bytes());
    let mut published = published;
    published.sort_by_key(|id| id.to_bytes());
    assert_eq!(
        linked, published,
        "each message's producer span is linked once"
    );
    bus.close().await.unwrap();
}

/// Runs each scenario as a test on each backend: `on_memory::name` and `on_jetstream::name`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::memory().await).await;
                }
            )*
        }
        mod on_jetstream {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::jetstream().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    a_chain_of_handlers_is_one_trace,
    failures_are_marked,
    a_batch_is_one_producer_span,
    a_foreign_traceparent_is_the_parent,
    an_unsampled_trace_stays_unsampled,
    a_batch_handler_run_links_its_messages,
);
