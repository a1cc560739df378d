//! JetStream consumer: handles `PriceUpdated` events in a durable group until Ctrl-C.
//!
//! ```text
//! cargo run -p examples --bin consumer                 # group `consumer-example-prices`
//! cargo run -p examples --bin consumer -- --group risk # start it twice: the two share the events
//! ```
//!
//! Settings come from `BUS_*` variables (servers, auth, TLS, `BUS_CONSUMER_NAME`, ...); the
//! backend is always JetStream. The durable consumer keeps its place: stop the consumer, run the
//! producer, start the consumer again and it gets what was published meanwhile. A price without
//! its `price` field can never be handled: it is dead-lettered to `dlq.cqc.events.v1.price_updated`.
//! Ctrl-C closes the bus: it stops pulling and waits for running handlers to finish and ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bus::Subscription;
use bus::middleware::Recovery;
use bus::{BackendKind, Delivery, Event, EventBus, EventBusConfig, HandlerError, ResultExt};
use cqc::events::v1::PriceUpdated;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let group = args
        .iter()
        .position(|a| a == "--group")
        .and_then(|i| args.get(i + 1))
        .cloned();

    let mut config = EventBusConfig::cqc().with_env()?;
    config.backend = BackendKind::JetStream;
    if config.consumer_name == EventBusConfig::default().consumer_name {
        config.consumer_name = "consumer-example".into();
    }
    let bus = EventBus::connect(config).await?;

    let handled = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&handled);
    let mut subscription = Subscription::new("prices", PriceUpdated::TOPIC)
        .layer(Recovery)
        .concurrency(8);
    if let Some(group) = group {
        subscription = subscription.group(group);
    }
    bus.subscribe(subscription.handler(move |event: PriceUpdated, delivery: Delivery| {
        let count = Arc::clone(&count);
        async move {
            let price = event.price.ok_or("PriceUpdated without a price").permanent()?;
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
        "consuming; Ctrl-C to stop"
    );

    tokio::signal::ctrl_c().await?;
    tracing::info!("closing: waiting for running handlers");
    bus.close().await?;
    tracing::info!(handled = handled.load(Ordering::Relaxed), "closed");
    Ok(())
}
