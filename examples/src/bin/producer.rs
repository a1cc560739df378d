//! JetStream producer: publishes `PriceUpdated` events to a NATS server.
//!
//! ```text
//! nats-server -js &                       # or any server with JetStream
//! cargo run -p examples --bin producer -- --count 1000
//! BUS_SERVERS=nats://a:4222,nats://b:4222 BUS_USER=svc BUS_PASSWORD=... \
//!     cargo run -p examples --bin producer -- --count 1000 --batch
//! ```
//!
//! Settings come from `BUS_*` variables (see `EventBusConfig::from_env`); the backend is always
//! JetStream and the server defaults to `nats://127.0.0.1:4222`. Each event's `event_id` becomes
//! its `Nats-Msg-Id`, so running the producer twice within the stream's duplicate window stores
//! the events once (the acks say `duplicate`). `--batch` publishes them pipelined.

use std::time::{Duration, Instant};

use bus::{BackendKind, EventBus, EventBusConfig};
use cqc::events::v1::PriceUpdated;
use cqc::markets::v1::Price;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: u64 = match args.iter().position(|a| a == "--count") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or("--count takes a number, e.g. --count 1000")?,
        None => 100,
    };
    let batch = args.iter().any(|a| a == "--batch");

    let mut config = EventBusConfig::cqc().with_env()?;
    config.backend = BackendKind::JetStream;
    let bus = EventBus::connect(config).await?;

    let events: Vec<PriceUpdated> = (0..count)
        .map(|i| PriceUpdated {
            event_id: format!("price-BTC-USD-{i}"),
            price: Some(Price {
                market_id: "BTC-USD".into(),
                value: 64_000.0 + i as f64,
                venue_id: "binance".into(),
                ..Default::default()
            }),
            previous_value: 64_000.0 + i as f64 - 1.0,
            source: "producer-example".into(),
            ..Default::default()
        })
        .collect();

    let started = Instant::now();
    let (stored, duplicates) = if batch {
        let acks = bus.publish_batch(&events).await?;
        let dups = acks.iter().filter(|a| a.duplicate).count();
        (acks.len() - dups, dups)
    } else {
        let (mut stored, mut dups) = (0, 0);
        for event in &events {
            match bus.publish(event).await {
                Ok(ack) if ack.duplicate => dups += 1,
                Ok(_) => stored += 1,
                // Transient: the same event id makes a later retry safe.
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "publish failed; retrying once");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    bus.publish(event).await?;
                    stored += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        (stored, dups)
    };
    let elapsed = started.elapsed();
    tracing::info!(
        stored,
        duplicates,
        ?elapsed,
        rate = format!("{:.0}/s", count as f64 / elapsed.as_secs_f64()),
        "published"
    );
    bus.close().await?;
    Ok(())
}
