//! A consumer process for the JetStream fault tests: subscribes `Ping` in a group and appends
//! each handled sequence number to a file *before* acknowledging it, so whatever a killed worker
//! acknowledged is in its file.
//!
//! Environment: `NATS_URL`, `OUT_FILE`, `GROUP`, optional `ACK_WAIT_MS` (default 2000),
//! `HANDLER_DELAY_MS` (time each event takes, default 2) and `MAX_DELIVER` (default: the
//! configuration's). Handlers have no time limit.
//! Prints `ready` on stdout once subscribed, then runs until killed.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Event, EventBus, EventBusConfig, HandlerError, Subscription};
use tests::events::Ping;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("set {name}"));
    let url = var("NATS_URL")?;
    let out = var("OUT_FILE")?;
    let group = var("GROUP")?;
    let ack_wait: u64 = std::env::var("ACK_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let delay = Duration::from_millis(
        std::env::var("HANDLER_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );

    let mut config = EventBusConfig::jetstream([url]).with_cqc_conventions();
    config.ack_wait = Duration::from_millis(ack_wait);
    config.consumer.handler_timeout = None;
    if let Some(n) = std::env::var("MAX_DELIVER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.max_deliver = n;
    }
    config.consumer.backoff = vec![Duration::from_millis(100)];
    let bus = EventBus::connect(config).await?;
    let file = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)?,
    ));
    bus.subscribe(
        Subscription::new("worker", Ping::TOPIC)
            .group(group)
            .concurrency(8)
            .max_ack_pending(64)
            .handler(move |e: Ping| {
                let file = Arc::clone(&file);
                async move {
                    tokio::time::sleep(delay).await;
                    // Written to the kernel before the ack: survives SIGKILL of this process.
                    tokio::task::spawn_blocking(move || {
                        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                        // One write, so a reader never sees half a number.
                        f.write_all(format!("{}\n", e.seq).as_bytes())
                    })
                    .await
                    .map_err(HandlerError::retryable)??;
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await?;
    writeln!(std::io::stdout(), "ready")?;
    std::io::stdout().flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
