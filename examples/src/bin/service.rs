//! A small service made of three `#[event_handler]`s over the CQC events, sharing one state.
//!
//! - `track_assets` (`AssetCreated`): remembers every asset's symbol.
//! - `watch_prices` (`PriceUpdated`, group `risk`, with retry, timeout, recovery, logging and
//!   metrics): keeps the latest price per market; a significant move publishes a `RiskAlert`.
//! - `escalate_alerts` (`RiskAlert`): records alerts and escalates those that need action now.
//!
//! It runs on the configured backend: memory by default, NATS JetStream with
//! `BUS_BACKEND=jetstream BUS_SERVERS=nats://127.0.0.1:4222`. It publishes a few sample events,
//! waits until they are handled, logs a summary and closes the bus.
//!
//! ```text
//! cargo run -p examples --bin service
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bus::{EventBus, EventBusConfig, HandlerError, ResultExt, State, event_handler};
use cqc::assets::v1::Asset;
use cqc::events::v1::{AssetCreated, PriceUpdated, RiskAlert, RiskAlertSeverity, RiskAlertType};
use cqc::markets::v1::Price;

/// What the handlers share: the bus (to publish follow-up events) and what they learnt.
struct App {
    bus: EventBus,
    symbols: Mutex<HashMap<String, String>>,
    prices: Mutex<HashMap<String, f64>>,
    alerts: Mutex<Vec<RiskAlert>>,
    escalated: Mutex<Vec<String>>,
}

/// Remembers the symbol of every new asset.
#[event_handler(logging)]
async fn track_assets(event: AssetCreated, app: State<App>) -> Result<(), HandlerError> {
    // An event without its asset will never become valid: dead-letter it at once.
    let asset = event
        .asset
        .ok_or("AssetCreated without an asset")
        .permanent()?;
    app.symbols
        .lock()
        .expect("lock")
        .insert(asset.asset_id, asset.symbol);
    Ok(())
}

/// Keeps the latest price per market and raises a risk alert on a significant move.
#[event_handler(
    group = "risk",
    retry(attempts = 3, initial_delay = "100ms"),
    timeout = "5s",
    recovery,
    logging,
    metrics,
    concurrency = 8
)]
async fn watch_prices(event: PriceUpdated, app: State<App>) -> Result<(), HandlerError> {
    let price = event
        .price
        .ok_or("PriceUpdated without a price")
        .permanent()?;
    app.prices
        .lock()
        .expect("lock")
        .insert(price.market_id.clone(), price.value);
    if event.is_significant {
        let mut alert = RiskAlert {
            event_id: format!("{}-volatility", event.event_id),
            message: format!(
                "{} moved {:+.1}% to {}",
                price.market_id, event.change_percent, price.value
            ),
            venue_id: event.venue_id,
            threshold_value: event.trigger_threshold,
            current_value: event.change_percent.abs(),
            requires_immediate_action: event.change_percent.abs() >= 2.0 * event.trigger_threshold,
            ..Default::default()
        };
        alert.set_alert_type(RiskAlertType::Volatility);
        alert.set_severity(if alert.requires_immediate_action {
            RiskAlertSeverity::Critical
        } else {
            RiskAlertSeverity::Medium
        });
        // A failed publish is retryable: `?` makes it so, and `retry` tries again in-process.
        app.bus.publish(&alert).await?;
    }
    Ok(())
}

/// Records every alert; those that need action now are escalated.
#[event_handler(logging, ordered)]
async fn escalate_alerts(alert: RiskAlert, app: State<App>) -> Result<(), HandlerError> {
    if alert.requires_immediate_action {
        tracing::warn!(alert = %alert.message, severity = ?alert.severity(), "escalating risk alert");
        app.escalated
            .lock()
            .expect("lock")
            .push(alert.event_id.clone());
    }
    app.alerts.lock().expect("lock").push(alert);
    Ok(())
}

fn sample_events() -> (Vec<AssetCreated>, Vec<PriceUpdated>) {
    let assets = [("eth", "ETH"), ("btc", "BTC")]
        .into_iter()
        .map(|(id, symbol)| AssetCreated {
            event_id: format!("asset-{id}"),
            asset: Some(Asset {
                asset_id: id.into(),
                symbol: symbol.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let prices = [
        ("eth-usd", 3000.0, 0.4),
        ("btc-usd", 60000.0, -0.2),
        ("eth-usd", 3240.0, 8.0),
        ("btc-usd", 61000.0, 1.7),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (market, value, change))| PriceUpdated {
        event_id: format!("price-{i}"),
        price: Some(Price {
            market_id: market.into(),
            value,
            ..Default::default()
        }),
        change_percent: change,
        trigger_threshold: 1.5,
        is_significant: f64::abs(change) >= 1.5,
        venue_id: "demo-venue".into(),
        ..Default::default()
    })
    .collect();
    (assets, prices)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let bus = EventBus::connect(EventBusConfig::cqc().with_env()?).await?;
    let app = State::new(App {
        bus: bus.clone(),
        symbols: Mutex::default(),
        prices: Mutex::default(),
        alerts: Mutex::default(),
        escalated: Mutex::default(),
    });
    bus.subscribe_all(bus::handlers![
        track_assets.with_state(app.clone()),
        watch_prices.with_state(app.clone()),
        escalate_alerts.with_state(app.clone()),
    ])
    .await?;

    let (assets, prices) = sample_events();
    let significant = prices.iter().filter(|p| p.is_significant).count();
    bus.publish_batch(&assets).await?;
    bus.publish_batch(&prices).await?;

    // Wait (bounded) until every sample event is handled, including the alerts they raise.
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = || {
        app.symbols.lock().expect("lock").len() == assets.len()
            && app.alerts.lock().expect("lock").len() == significant
    };
    while !done() {
        if Instant::now() > deadline {
            bus.close().await?;
            return Err("the sample events were not all handled within 10s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bus.close().await?;

    tracing::info!(
        assets = ?app.symbols.lock().expect("lock"),
        prices = ?app.prices.lock().expect("lock"),
        alerts = app.alerts.lock().expect("lock").len(),
        escalated = ?app.escalated.lock().expect("lock"),
        "service handled the sample events"
    );
    Ok(())
}
