//! A bounded soak: `cargo run --release -p examples --bin soak -- [--minutes N] [--rate R]
//! [--restart-every S] [--json]`.
//!
//! Starts its own `nats-server`, publishes events at a steady rate (`--rate`, default 1 000/s,
//! in batches every 10 ms) to a JetStream subscription, and restarts the server every
//! `--restart-every` seconds (default 60) for `--minutes` (default 10). A batch that fails
//! while the server is down is published again (event ids make that safe). At the end it waits
//! for every event and reports, with the figure names of `BENCHMARKS.md`:
//!
//! - `soak.sent`, `soak.received` (distinct), `soak.lost` (sent and never received),
//!   `soak.duplicates` (deliveries beyond the first), `soak.dead_letters`, `soak.restarts`;
//! - `soak.rss_start_mb` (after a 10 s warm-up), `soak.rss_max_mb`, `soak.rss_end_mb`,
//!   `soak.rss_growth_mb` (end less start), and `soak.fds_start`, `soak.fds_end`.
//!
//! Exits with status 1 if an event was lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::testing::NatsServer;
use bus::{Event, EventBus, EventBusConfig, HandlerError, RawMessage, Subscription, Topic};
use examples::report::Figure;
use tokio::time::Instant;

/// The soak's event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SoakTick {
    /// Event id (becomes `Nats-Msg-Id`).
    #[prost(string, tag = "1")]
    pub event_id: String,
    /// Sequence number.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
}

impl Event for SoakTick {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.soak_tick");
    const EVENT_TYPE: &'static str = "soak_tick";
    const FULL_NAME: &'static str = "cqc.events.v1.SoakTick";
    fn event_id(&self) -> Option<&str> {
        Some(self.event_id.as_str())
    }
}

/// Which sequence numbers arrived, and how many deliveries in all.
#[derive(Default)]
struct Seen {
    received: Vec<bool>,
    distinct: u64,
    deliveries: u64,
}

impl Seen {
    fn record(&mut self, seq: u64) {
        self.deliveries += 1;
        let i = seq as usize;
        if self.received.len() <= i {
            self.received.resize(i + 1, false);
        }
        if !self.received[i] {
            self.received[i] = true;
            self.distinct += 1;
        }
    }
}

struct Options {
    minutes: f64,
    rate: u64,
    restart_every: Duration,
    json: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<f64>()
                    .unwrap_or_else(|_| fail(&format!("{flag} {v}: not a number")))
            })
    };
    Options {
        minutes: value("--minutes").unwrap_or(10.0),
        rate: value("--rate").unwrap_or(1000.0) as u64,
        restart_every: Duration::from_secs_f64(value("--restart-every").unwrap_or(60.0)),
        json: args.iter().any(|a| a == "--json"),
    }
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let lost = runtime.block_on(soak(o));
    if lost > 0 {
        std::process::exit(1);
    }
}

async fn soak(o: Options) -> u64 {
    let mut server = NatsServer::start().await;
    let mut config = EventBusConfig::jetstream([server.url()]).with_cqc_conventions();
    config.consumer_name = "soak".into();
    config.publish_timeout = Duration::from_secs(10);
    config.ack_wait = Duration::from_secs(5);
    config.max_deliver = 20;
    config.consumer.backoff = vec![Duration::from_millis(100)];
    let bus = EventBus::connect(config).await.expect("connecting");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    bus.subscribe(
        Subscription::new("count", SoakTick::TOPIC)
            .concurrency(32)
            .handler(move |e: SoakTick| {
                s.lock().unwrap().record(e.seq);
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .expect("subscribing");
    let dead = Arc::new(AtomicU64::new(0));
    let d = Arc::clone(&dead);
    bus.subscribe(
        Subscription::raw("dead-letters", "dlq.>")
            .expect("a valid filter")
            .handler(move |_: RawMessage| {
                d.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .expect("subscribing to dead letters");

    let sent = Arc::new(AtomicU64::new(0));
    let publisher = tokio::spawn(publish(bus.clone(), o.rate, o.minutes, Arc::clone(&sent)));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(o.minutes * 60.0);
    let warm_up = started + Duration::from_secs(10);
    let (mut rss_start, mut rss_max, fds_start) = (rss_mb(), rss_mb(), open_fds());
    let mut next_restart = started + o.restart_every;
    let mut restarts = 0u64;
    let mut warmed = false;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss_max = rss_max.max(rss_mb());
        if !warmed && Instant::now() >= warm_up {
            rss_start = rss_mb();
            warmed = true;
        }
        if Instant::now() >= next_restart && Instant::now() + Duration::from_secs(5) < end {
            server.restart().await;
            restarts += 1;
            next_restart += o.restart_every;
            eprintln!(
                "restart {restarts} at {:?}: {} sent, {} received",
                started.elapsed(),
                sent.load(Ordering::Relaxed),
                seen.lock().unwrap().distinct
            );
        }
    }
    publisher.await.expect("the publisher task");
    let total = sent.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().distinct < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // late redeliveries count as duplicates
    let (rss_end, fds_end) = (rss_mb(), open_fds());
    bus.close().await.expect("closing");
    let seen = seen.lock().unwrap();
    let lost = total - seen.distinct;
    for f in [
        Figure::new("soak.sent", total as f64, "events"),
        Figure::new("soak.received", seen.distinct as f64, "events"),
        Figure::new("soak.lost", lost as f64, "events"),
        Figure::new(
            "soak.duplicates",
            (seen.deliveries - seen.distinct) as f64,
            "deliveries",
        ),
        Figure::new(
            "soak.dead_letters",
            dead.load(Ordering::Relaxed) as f64,
            "events",
        ),
        Figure::new("soak.restarts", restarts as f64, "restarts"),
        Figure::new("soak.rss_start_mb", rss_start, "MB"),
        Figure::new("soak.rss_max_mb", rss_max, "MB"),
        Figure::new("soak.rss_end_mb", rss_end, "MB"),
        Figure::new("soak.rss_growth_mb", rss_end - rss_start, "MB"),
        Figure::new("soak.fds_start", fds_start as f64, "fds"),
        Figure::new("soak.fds_end", fds_end as f64, "fds"),
    ] {
        f.print(o.json);
    }
    lost
}

/// Publishes `rate` events a second in batches every 10 ms for `minutes`; a failed batch is
/// published again until it is stored.
async fn publish(bus: EventBus, rate: u64, minutes: f64, sent: Arc<AtomicU64>) {
    let per_batch = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut next = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let batch: Vec<SoakTick> = (next..next + per_batch)
            .map(|seq| SoakTick {
                event_id: format!("soak-{seq}"),
                seq,
            })
            .collect();
        loop {
            match bus.publish_batch(&batch).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => fail(&format!("publishing failed for good: {e}")),
            }
        }
        next += per_batch;
        sent.store(next, Ordering::Relaxed);
    }
}

/// This process's resident memory, in MB.
fn rss_mb() -> f64 {
    proc_status_kb("VmRSS:") / 1024.0
}

fn proc_status_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}
