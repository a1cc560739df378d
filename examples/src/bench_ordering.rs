//! Throughput under ordering, and batch handlers, on both backends.
//!
//! - `ordering.*`: a handler that awaits 1 ms (an I/O call) under `ordered` (one event in flight
//!   for the whole subscription), `ordered_by` a key with 16 values (strict order within a key,
//!   concurrency 16 across keys), and unordered with concurrency 16 (the ceiling).
//! - `batch.*`: one-by-one handling against a batch handler (batches of up to 100 events or
//!   5 ms), with a handler that does nothing and with one that awaits 1 ms per call (one
//!   database round trip per call, whether it carries one event or a hundred). Both at
//!   concurrency 16 (for the batch handler, 16 batches).
//!
//! Each row subscribes a fresh group, publishes the events (`publish_batch`) and times until the
//! handler has seen all of them; rows of one backend run in the same process against the same
//! server, so their ratios are what to read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{BatchOptions, Event, EventBus, EventBusConfig, HandlerError, MemoryBus, Subscription};

use crate::bench_common::{Counter, run_id, within};
use crate::bench_jetstream::{JsBenchPrice, event};
use crate::report::Figure;

/// Events per row whose handler awaits 1 ms.
const SLOW_EVENTS: u64 = 2_000;
/// Events per row whose handler does nothing.
const QUICK_EVENTS: u64 = 20_000;
/// Distinct keys under `ordered_by`.
const KEYS: u64 = 16;
/// Concurrency of the concurrent rows.
const CONCURRENCY: usize = 16;
/// What a slow handler awaits per call.
const CALL: Duration = Duration::from_millis(1);

/// How a row handles its events.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `ordered()`: one event in flight.
    Ordered,
    /// `ordered_by(seq % 16)`, concurrency 16.
    ByKey,
    /// Concurrency 16, no order.
    Unordered,
    /// `batch_handler` with batches of up to 100 events or 5 ms, concurrency 16.
    Batch,
}

/// Where the rows run.
struct Rows {
    config: EventBusConfig,
    backend: &'static str,
    run: String,
    rows: u64,
}

impl Rows {
    async fn connect(&self) -> EventBus {
        if self.backend == "memory" {
            MemoryBus::new(self.config.clone())
                .expect("memory config")
                .into()
        } else {
            EventBus::connect(self.config.clone())
                .await
                .expect("connecting the bus")
        }
    }

    /// Events handled per second in `mode`, `slow` handlers awaiting [`CALL`] per call.
    async fn row(&mut self, mode: Mode, slow: bool) -> f64 {
        self.rows += 1;
        let n = if slow { SLOW_EVENTS } else { QUICK_EVENTS };
        let bus = self.connect().await;
        let seen = Counter::new(n);
        let group = format!("ordering-{}-{}", self.run, self.rows);
        bus.subscribe(subscription(&group, mode, slow, Arc::clone(&seen)))
            .await
            .expect("subscribe");
        let events: Vec<JsBenchPrice> = (0..n)
            .map(|s| event(&self.run, self.rows as usize, s, 0))
            .collect();
        let start = Instant::now();
        within(
            format!("publishing the {mode:?} row's {n} events"),
            bus.publish_batch(&events),
        )
        .await
        .expect("publish");
        seen.wait(&format!("the {mode:?} row's handler ({})", self.backend))
            .await;
        let rate = n as f64 / start.elapsed().as_secs_f64();
        bus.close().await.expect("close");
        rate
    }
}

fn subscription(group: &str, mode: Mode, slow: bool, seen: Arc<Counter>) -> Subscription {
    let builder = Subscription::new("ordering", JsBenchPrice::TOPIC)
        .group(group)
        .max_ack_pending(4096);
    let builder = match mode {
        Mode::Ordered => builder.ordered(),
        Mode::ByKey => builder
            .ordered_by(|e: &JsBenchPrice| e.seq % KEYS)
            .concurrency(CONCURRENCY),
        Mode::Unordered | Mode::Batch => builder.concurrency(CONCURRENCY),
    };
    if let Mode::Batch = mode {
        return builder.batch_handler(
            BatchOptions::new(100, Duration::from_millis(5)),
            move |events: Vec<JsBenchPrice>| {
                let seen = Arc::clone(&seen);
                async move {
                    if slow {
                        tokio::time::sleep(CALL).await;
                    }
                    for e in events {
                        std::hint::black_box(e);
                        seen.hit();
                    }
                    Ok::<_, HandlerError>(())
                }
            },
        );
    }
    builder.handler(move |e: JsBenchPrice| {
        let seen = Arc::clone(&seen);
        async move {
            if slow {
                tokio::time::sleep(CALL).await;
            }
            std::hint::black_box(e);
            seen.hit();
            Ok::<_, HandlerError>(())
        }
    })
}

/// Runs the ordering and batch rows on the memory backend and on JetStream (`url`, or a
/// `nats-server` it starts), printing each row and its ratio.
///
/// # Panics
///
/// When the server cannot be started or reached, or a row does not finish within
/// [`PHASE_TIMEOUT`](crate::bench_common::PHASE_TIMEOUT).
pub async fn run(json: bool, url: Option<String>) -> Vec<Figure> {
    let server = match url {
        Some(_) => None,
        None => Some(bus::testing::NatsServer::start().await),
    };
    let url = url.unwrap_or_else(|| server.as_ref().expect("started").url());
    let mut memory = EventBusConfig::memory();
    memory.memory_queue_capacity = 4096;
    let mut jetstream = EventBusConfig::jetstream([url]).with_cqc_conventions();
    jetstream.publish_timeout = Duration::from_secs(30);
    let mut figures = Vec::new();
    for (backend, config) in [("memory", memory), ("jetstream", jetstream)] {
        let mut rows = Rows {
            config,
            backend,
            run: run_id(),
            rows: 0,
        };
        let ordered = rows.row(Mode::Ordered, true).await;
        let by_key = rows.row(Mode::ByKey, true).await;
        let unordered = rows.row(Mode::Unordered, true).await;
        let quick_ordered = rows.row(Mode::Ordered, false).await;
        let quick_by_key = rows.row(Mode::ByKey, false).await;
        let single_quick = rows.row(Mode::Unordered, false).await;
        let batch_quick = rows.row(Mode::Batch, false).await;
        let batch_slow = rows.row(Mode::Batch, true).await;
        let name = |n: &str| format!("{backend}.{n}");
        figures.extend([
            Figure::new(name("ordering.1ms.ordered"), ordered, "events/s"),
            Figure::against(name("ordering.1ms.by_key16"), by_key, "events/s", ordered),
            Figure::against(
                name("ordering.1ms.unordered16"),
                unordered,
                "events/s",
                ordered,
            ),
            Figure::new(name("ordering.quick.ordered"), quick_ordered, "events/s"),
            Figure::against(
                name("ordering.quick.by_key16"),
                quick_by_key,
                "events/s",
                quick_ordered,
            ),
            Figure::new(name("batch.quick.one_by_one"), single_quick, "events/s"),
            Figure::against(
                name("batch.quick.batch100"),
                batch_quick,
                "events/s",
                single_quick,
            ),
            Figure::new(name("batch.1ms.one_by_one"), unordered, "events/s"),
            Figure::against(
                name("batch.1ms.batch100"),
                batch_slow,
                "events/s",
                unordered,
            ),
        ]);
    }
    for f in &figures {
        f.print(json);
    }
    drop(server);
    figures
}
