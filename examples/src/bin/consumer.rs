//! JetStream consumer: handles `PriceUpdated` events in a durable group until SIGTERM or Ctrl-C.
//!
//! ```text
//! cargo run -p examples --bin consumer                 # group `consumer-example-prices`
//! cargo run -p examples --bin consumer -- --group risk # start it twice: the two share the events
//! cargo run -p examples --bin consumer -- --work-ms 200 --journal handled.txt
//! ```
//!
//! Settings come from `BUS_*` variables (servers, auth, TLS, `BUS_CONSUMER_NAME`, ...); the
//! backend is always JetStream. The durable consumer keeps its place: stop the consumer, run the
//! producer, start the consumer again and it gets what was published meanwhile. A price without
//! its `price` field can never be handled: it is dead-lettered to `dlq.cqc.events.v1.price_updated`.
//!
//! SIGTERM (what Kubernetes sends) or Ctrl-C closes the bus: it stops pulling, gives back what it
//! had not started, and waits (up to `BUS_DRAIN_TIMEOUT`) for running handlers to finish and ack.
//! `--work-ms N` makes each event take N ms, to watch that happen; `--journal PATH` appends
//! `<stream sequence> <attempt>` for each handled event, before it is acknowledged.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::Subscription;
use bus::middleware::Recovery;
use bus::{BackendKind, Delivery, Event, EventBus, EventBusConfig, HandlerError, ResultExt};
use cqc::events::v1::PriceUpdated;

/// The command line.
struct Args {
    group: Option<String>,
    work: Duration,
    journal: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .map(|i| {
                    args.get(i + 1)
                        .cloned()
                        .ok_or(format!("{flag} takes a value"))
                })
                .transpose()
        };
        let work = match value("--work-ms")? {
            Some(ms) => Duration::from_millis(
                ms.parse()
                    .map_err(|_| format!("--work-ms takes milliseconds, e.g. 200; got {ms:?}"))?,
            ),
            None => Duration::ZERO,
        };
        Ok(Args {
            group: value("--group")?,
            work,
            journal: value("--journal")?.map(PathBuf::from),
        })
    }
}

/// Appends one line per handled event; each line is one `write`, so readers never see half.
#[derive(Clone)]
struct Journal(Arc<Mutex<std::fs::File>>);

impl Journal {
    fn open(path: &PathBuf) -> std::io::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Journal(Arc::new(Mutex::new(file))))
    }

    async fn record(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let line = format!("{} {}\n", delivery.stream_sequence(), delivery.attempt());
        let file = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(line.as_bytes())
        })
        .await
        .map_err(HandlerError::retryable)?
        .map_err(HandlerError::retryable)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse()?;
    let journal = args.journal.as_ref().map(Journal::open).transpose()?;

    let mut config = EventBusConfig::cqc().with_env()?;
    config.backend = BackendKind::JetStream;
    if config.consumer_name == EventBusConfig::default().consumer_name {
        config.consumer_name = "consumer-example".into();
    }
    let bus = EventBus::connect(config).await?;

    let handled = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&handled);
    let work = args.work;
    let mut subscription = Subscription::new("prices", PriceUpdated::TOPIC)
        .layer(Recovery)
        .concurrency(8);
    if let Some(group) = args.group {
        subscription = subscription.group(group);
    }
    bus.subscribe(subscription.handler(move |event: PriceUpdated, delivery: Delivery| {
        let count = Arc::clone(&count);
        let journal = journal.clone();
        async move {
            let price = event.price.ok_or("PriceUpdated without a price").permanent()?;
            tokio::time::sleep(work).await;
            if let Some(journal) = journal {
                journal.record(&delivery).await?;
            }
            let n = count.fetch_add(1, Ordering::Relaxed) + 1;
            if n % 1000 == 1 || delivery.attempt() > 1 {
                tracing::info!(
                    market = %price.market_id, value = price.value, attempt = delivery.attempt(),
                    sequence = delivery.stream_sequence(), handled = n, "price"
                );
            }
            Ok::<_, HandlerError>(())
        }
    }))
    .await?;
    tracing::info!(
        topic = PriceUpdated::TOPIC.as_str(),
        "consuming; SIGTERM or Ctrl-C to stop"
    );

    let signal = bus.run_until_shutdown().await?;
    tracing::info!(%signal, handled = handled.load(Ordering::Relaxed), "closed");
    Ok(())
}
