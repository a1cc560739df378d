//! A service that serves its metrics on `/metrics` for Prometheus, with
//! `metrics-exporter-prometheus`; `examples/grafana/bus-dashboard.json` is a Grafana dashboard
//! over these series (the names, units and labels are documented in `bus::telemetry`).
//!
//! ```text
//! cargo run -p examples --bin metrics_service                      # memory backend
//! BUS_BACKEND=jetstream BUS_SERVERS=nats://127.0.0.1:4222 \
//!     cargo run -p examples --bin metrics_service -- --count 1000
//! curl -s http://127.0.0.1:9464/metrics | grep ^bus_
//! ```
//!
//! It subscribes one handler to `PriceUpdated`, then publishes `--count` prices (default 100):
//! every tenth has no price, which can never be handled, so it is dead-lettered (class
//! `permanent`); every tenth is for market `FLAKY`, whose first delivery fails with a retryable
//! error, so it is redelivered once and then acknowledged. Then it keeps serving `/metrics` until
//! SIGTERM or Ctrl-C. `--listen ADDR` changes the address (default `127.0.0.1:9464`).

use std::net::SocketAddr;

use bus::{Delivery, Event, EventBus, EventBusConfig, HandlerError, ResultExt, Subscription};
use cqc::events::v1::PriceUpdated;
use cqc::markets::v1::Price;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Histogram buckets in seconds, from 100 µs to 10 s, for the `_seconds` series.
const BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct Args {
    listen: SocketAddr,
    count: u64,
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
        let listen = value("--listen")?.unwrap_or_else(|| "127.0.0.1:9464".into());
        let count = value("--count")?.unwrap_or_else(|| "100".into());
        Ok(Args {
            listen: listen.parse().map_err(|_| {
                format!("--listen takes host:port, e.g. 127.0.0.1:9464; got {listen:?}")
            })?,
            count: count
                .parse()
                .map_err(|_| format!("--count takes a number; got {count:?}"))?,
        })
    }
}

/// The `i`th sample price: some can never be handled, some fail once.
fn sample(i: u64) -> PriceUpdated {
    let market = if i % 10 == 7 { "FLAKY" } else { "BTC-USD" };
    PriceUpdated {
        event_id: format!("metrics-example-{i}"),
        price: (i % 10 != 3).then(|| Price {
            market_id: market.into(),
            value: 64_000.0 + i as f64,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn handle(event: PriceUpdated, delivery: Delivery) -> Result<(), HandlerError> {
    let price = event
        .price
        .ok_or("PriceUpdated without a price")
        .permanent()?;
    if price.market_id == "FLAKY" && delivery.attempt() == 1 {
        return Err(HandlerError::retryable(
            "the FLAKY market fails its first delivery",
        ));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse()?;
    // Before the bus: series handles are registered as subscriptions start.
    PrometheusBuilder::new()
        .with_http_listener(args.listen)
        .set_buckets(BUCKETS)?
        .install()?;
    bus::telemetry::describe();
    tracing::info!("metrics on http://{}/metrics", args.listen);

    let mut config = EventBusConfig::cqc().with_env()?;
    if config.consumer_name == EventBusConfig::default().consumer_name {
        config.consumer_name = "metrics-example".into();
    }
    let bus = EventBus::connect(config).await?;
    bus.subscribe(
        Subscription::new("prices", PriceUpdated::TOPIC)
            .concurrency(4)
            .handler(handle),
    )
    .await?;
    for i in 0..args.count {
        bus.publish(&sample(i)).await?;
    }
    tracing::info!(
        published = args.count,
        "published; serving metrics until SIGTERM or Ctrl-C"
    );
    let signal = bus.run_until_shutdown().await?;
    tracing::info!(%signal, "closed");
    Ok(())
}
