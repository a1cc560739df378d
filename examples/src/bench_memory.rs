//! Memory-backend benchmark: publish -> typed handler throughput with 1 and 16 groups, beside a
//! raw tokio mpsc channel carrying the same encoded bytes to a consumer that decodes them, plus
//! heap allocations per delivered event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus::{Event, EventBus, EventBusConfig, HandlerError, MemoryBus, Subscription, Topic};
use bytes::Bytes;
use prost::Message;
use tokio::sync::{Notify, mpsc};

use crate::report::Figure;

/// A price update shaped like `cqc.events.v1.PriceUpdated` (about 120 bytes encoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BenchPrice {
    /// Event id.
    #[prost(string, tag = "1")]
    pub event_id: String,
    /// Market.
    #[prost(string, tag = "2")]
    pub market_id: String,
    /// Venue.
    #[prost(string, tag = "3")]
    pub venue_id: String,
    /// Price.
    #[prost(double, tag = "4")]
    pub value: f64,
    /// Previous price.
    #[prost(double, tag = "5")]
    pub previous_value: f64,
    /// Change in percent.
    #[prost(double, tag = "6")]
    pub change_percent: f64,
    /// Sequence.
    #[prost(uint64, tag = "7")]
    pub seq: u64,
    /// Source.
    #[prost(string, tag = "8")]
    pub source: String,
}

impl Event for BenchPrice {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.bench_price");
    const EVENT_TYPE: &'static str = "bench_price";
    const FULL_NAME: &'static str = "cqc.events.v1.BenchPrice";
    fn event_id(&self) -> Option<&str> {
        Some(self.event_id.as_str()).filter(|s| !s.is_empty())
    }
}

/// A benchmark event with sequence `seq`.
pub fn event(seq: u64) -> BenchPrice {
    BenchPrice {
        event_id: format!("evt-{seq:012}"),
        market_id: "BTC-USD".into(),
        venue_id: "binance".into(),
        value: 64_000.0 + seq as f64,
        previous_value: 63_999.0,
        change_percent: 0.0015,
        seq,
        source: "bench".into(),
    }
}

/// Counts handled events and wakes the benchmark when all arrived.
struct Done {
    count: AtomicU64,
    target: u64,
    notify: Notify,
}

impl Done {
    fn new(target: u64) -> Arc<Self> {
        Arc::new(Done {
            count: AtomicU64::new(0),
            target,
            notify: Notify::new(),
        })
    }

    fn hit(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.notify.notify_one();
        }
    }

    async fn wait(&self) {
        while self.count.load(Ordering::Relaxed) < self.target {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.notify.notified()).await;
        }
    }
}

/// Raw limit: encoded bytes through a bounded tokio channel to a task that decodes them.
async fn raw_channel(events: &[BenchPrice]) -> Duration {
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    let n = events.len();
    let consumer = tokio::spawn(async move {
        let mut sum = 0u64;
        for _ in 0..n {
            let bytes = rx.recv().await.expect("producer alive");
            let e = BenchPrice::decode(bytes).expect("valid");
            sum = sum.wrapping_add(std::hint::black_box(e).seq);
        }
        sum
    });
    let start = Instant::now();
    for e in events {
        tx.send(Bytes::from(e.encode_to_vec()))
            .await
            .expect("consumer alive");
    }
    consumer.await.expect("consumer task");
    start.elapsed()
}

/// The bus: publish every event, each delivered decoded to a typed handler in every group.
/// Returns the time from the first publish to the last delivery.
///
/// # Panics
///
/// When publishing or subscribing fails.
pub async fn bus_run(events: &[BenchPrice], groups: usize) -> Duration {
    bus_run_traced(events, groups, Trace::Off).await
}

/// How `bench memory --trace` traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trace {
    /// `trace_context` off (the default).
    Off,
    /// `trace_context` on with no OpenTelemetry layer: the `traceparent` pass-through.
    Context,
    /// `trace_context` on under the `tracing-opentelemetry` layer of an SDK tracer provider:
    /// every span made, sampled and ended; no exporter, so exporting is not part of the figure.
    Otel,
}

impl std::str::FromStr for Trace {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Trace::Off),
            "context" => Ok(Trace::Context),
            "otel" => Ok(Trace::Otel),
            other => Err(format!("--trace {other}: give off, context or otel")),
        }
    }
}

/// Installs the global `tracing` subscriber [`Trace::Otel`] runs under; keep the provider for
/// the run.
fn install_otel() -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
    tracing::subscriber::set_global_default(subscriber).expect("no subscriber installed yet");
    provider
}

/// [`bus_run`] with tracing as `trace` says.
async fn bus_run_traced(events: &[BenchPrice], groups: usize, trace: Trace) -> Duration {
    let mut config = EventBusConfig::memory();
    config.memory_queue_capacity = 1024;
    config.trace_context = trace != Trace::Off;
    let bus: EventBus = MemoryBus::new(config).expect("config").into();
    let done = Done::new(events.len() as u64 * groups as u64);
    for g in 0..groups {
        let d = Arc::clone(&done);
        bus.subscribe(
            Subscription::new(format!("bench_{g}"), BenchPrice::TOPIC).handler(
                move |e: BenchPrice| {
                    std::hint::black_box(e);
                    d.hit();
                    std::future::ready(Ok::<_, HandlerError>(()))
                },
            ),
        )
        .await
        .expect("subscribe");
    }
    let start = Instant::now();
    for e in events {
        bus.publish(e).await.expect("publish");
    }
    done.wait().await;
    let elapsed = start.elapsed();
    bus.close().await.expect("close");
    elapsed
}

/// Runs the memory benchmark with tracing as `trace` says; `count_allocs` returns the number of
/// heap allocations so far.
pub async fn run(
    json: bool,
    n: usize,
    trace: Trace,
    count_allocs: impl Fn() -> u64,
) -> Vec<Figure> {
    let _provider = (trace == Trace::Otel).then(install_otel);
    let bus_run = |events, groups| bus_run_traced(events, groups, trace);
    let events: Vec<BenchPrice> = (0..n as u64).map(event).collect();
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    // Warm up both paths once, then take the best of three (the machines are noisy).
    let _ = raw_channel(&events[..n / 10]).await;
    let _ = bus_run(&events[..n / 10], 1).await;
    let mut raw = 0f64;
    let mut one = 0f64;
    let mut sixteen = 0f64;
    for _ in 0..3 {
        raw = raw.max(rate(raw_channel(&events).await));
        one = one.max(rate(bus_run(&events, 1).await));
        sixteen = sixteen.max(rate(bus_run(&events[..n / 4], 16).await) / 4.0);
    }
    let before = count_allocs();
    let _ = bus_run(&events, 1).await;
    let allocs = (count_allocs() - before) as f64 / n as f64;
    let before = count_allocs();
    let _ = raw_channel(&events).await;
    let raw_allocs = (count_allocs() - before) as f64 / n as f64;

    let figures = vec![
        Figure::against("memory.throughput.1group", one, "events/s", raw),
        Figure::against("memory.throughput.16groups", sixteen, "events/s", raw),
        Figure::new("memory.deliveries.16groups", sixteen * 16.0, "deliveries/s"),
        Figure::new(
            "memory.cost_per_group.16vs1",
            (one / sixteen) / 16.0,
            "x linear",
        ),
        Figure::against("memory.allocs_per_event", allocs, "allocs", raw_allocs),
    ];
    for f in &figures {
        f.print(json);
    }
    figures
}
