//! Quickstart: typed CQC events on the embedded memory bus.
//!
//! ```text
//! cargo run -p examples --bin quickstart
//! ```
//!
//! It subscribes a few handlers, publishes a handful of events and prints what happened to
//! each: handled, redelivered after a transient failure, or dead-lettered. The backend comes from
//! the environment (`BUS_BACKEND`, `BUS_SERVERS`, ...; see `EventBusConfig::from_env`), so the
//! same program runs on NATS JetStream with
//! `BUS_BACKEND=jetstream BUS_SERVERS=nats://127.0.0.1:4222 cargo run -p examples --bin quickstart`.
#![allow(clippy::print_stdout)]

use std::time::Duration;

use bus::middleware::{Logging, Recovery, Timeout};
use bus::{
    Delivery, Event, EventBus, EventBusConfig, HandlerError, RawMessage, ResultExt, Subscription,
    headers,
};
use cqc::events::v1::{AnyEvent, AssetCreated, OrderPlaced, PriceUpdated, topics};
use cqc::markets::v1::Price;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut config = EventBusConfig::cqc().with_env()?;
    config.consumer_name = "quickstart".into();
    // Redeliver quickly so the demo does not wait for the production backoff (1s, 5s, 30s).
    config.consumer.backoff = vec![Duration::from_millis(100)];
    let bus = EventBus::connect(config).await?;
    println!("event bus up on the {} backend", bus_kind(&bus));

    // Everything the handlers report comes back here, so main can print it in order.
    let (report, mut reports) = mpsc::channel::<String>(64);

    // 1. A typed handler: gets `AssetCreated`, decoded, with its delivery metadata.
    let r = report.clone();
    bus.subscribe(
        Subscription::new("catalog", topics::ASSET_CREATED)
            .layer(Logging::new())
            .handler(move |event: AssetCreated, d: Delivery| {
                let r = r.clone();
                async move {
                    let symbol = event.asset.map(|a| a.symbol).unwrap_or_default();
                    r.send(format!(
                        "catalog   handled AssetCreated {symbol} (event id {}, attempt {})",
                        d.event_id().unwrap_or("-"),
                        d.attempt()
                    ))
                    .await
                    .permanent()
                }
            }),
    )
    .await?;

    // 2. A handler whose first attempt fails transiently: the bus redelivers it.
    let r = report.clone();
    bus.subscribe(
        Subscription::new("pricing", PriceUpdated::TOPIC)
            .layer(Timeout::new(Duration::from_secs(5)))
            .handler(move |event: PriceUpdated, d: Delivery| {
                let r = r.clone();
                async move {
                    let value = event.price.map(|p| p.value).unwrap_or_default();
                    if d.attempt() == 1 {
                        r.send(format!(
                            "pricing   attempt 1 failed for {value} (cache warming up)"
                        ))
                        .await
                        .permanent()?;
                        return Err(HandlerError::retryable("price cache not ready"));
                    }
                    r.send(format!(
                        "pricing   handled PriceUpdated {value} on attempt {}",
                        d.attempt()
                    ))
                    .await
                    .permanent()
                }
            }),
    )
    .await?;

    // 3. A handler that rejects bad input permanently: the event is dead-lettered at once.
    bus.subscribe(
        Subscription::new("risk", OrderPlaced::TOPIC)
            .layer(Recovery)
            .handler(|order: OrderPlaced| async move {
                if order.quantity <= 0.0 {
                    return Err(HandlerError::permanent(format!(
                        "order {} has quantity {}",
                        order.client_order_id, order.quantity
                    )));
                }
                Ok(())
            }),
    )
    .await?;

    // 4. A dynamic handler over every CQC event, decoding through the generated registry.
    let r = report.clone();
    bus.subscribe(
        Subscription::raw("audit", "cqc.events.v1.>")?.handler(move |m: RawMessage| {
            let r = r.clone();
            async move {
                let event = AnyEvent::decode(m.topic(), m.payload.clone()).permanent()?;
                r.send(format!(
                    "audit     saw {} on {}",
                    event_name(&event),
                    m.topic()
                ))
                .await
                .permanent()
            }
        }),
    )
    .await?;

    // 5. Dead letters: the original bytes plus headers saying where they came from and why.
    let r = report.clone();
    bus.subscribe(
        Subscription::raw("dead_letters", "dlq.>")?.handler(move |m: RawMessage| {
            let r = r.clone();
            async move {
                let h = m.headers();
                r.send(format!(
                    "dlq       {} from {} (group {}, {} error: {})",
                    m.topic(),
                    h.get(headers::DLQ_TOPIC).unwrap_or("?"),
                    h.get(headers::DLQ_GROUP).unwrap_or("?"),
                    h.get(headers::DLQ_ERROR_CLASS).unwrap_or("?"),
                    h.get(headers::DLQ_ERROR).unwrap_or("?"),
                ))
                .await
                .permanent()
            }
        }),
    )
    .await?;
    drop(report);

    bus.publish(&AssetCreated {
        event_id: "asset-1".into(),
        asset: Some(cqc::assets::v1::Asset {
            asset_id: "btc".into(),
            symbol: "BTC".into(),
            name: "Bitcoin".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await?;
    bus.publish(&PriceUpdated {
        event_id: "price-1".into(),
        price: Some(Price {
            market_id: "BTC-USD".into(),
            value: 64_250.5,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await?;
    bus.publish(&OrderPlaced {
        event_id: "order-1".into(),
        client_order_id: "c-42".into(),
        quantity: 0.0,
        ..Default::default()
    })
    .await?;
    println!("published 3 events\n");

    // audit: 3, catalog: 1, pricing: 2, dead letter: 1.
    let expected = 7;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen < expected {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(line)) => {
                println!("{line}");
                seen += 1;
            }
            Ok(None) | Err(_) => break,
        }
    }
    bus.close().await?;
    println!(
        "\nclosed: {seen} of {expected} expected outcomes seen; health now {:?}",
        bus.check().await
    );
    if seen < expected {
        return Err(format!("only {seen} of {expected} outcomes arrived").into());
    }
    Ok(())
}

fn bus_kind(bus: &EventBus) -> &'static str {
    if bus.as_memory().is_some() {
        "memory"
    } else {
        "jetstream"
    }
}

fn event_name(event: &AnyEvent) -> &'static str {
    match event {
        AnyEvent::AssetCreated(_) => AssetCreated::FULL_NAME,
        AnyEvent::PriceUpdated(_) => PriceUpdated::FULL_NAME,
        AnyEvent::OrderPlaced(_) => OrderPlaced::FULL_NAME,
        _ => "another CQC event",
    }
}
