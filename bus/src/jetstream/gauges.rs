//! The consumer gauges of [`crate::telemetry`]: a durable consumer's pending and ack-pending
//! counts, sampled from its info every [`CONSUMER_SAMPLE_INTERVAL`] by a task the bus owns (it
//! ends when the bus closes).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{Consumer, pull};
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::telemetry::{CONSUMER_ACK_PENDING, CONSUMER_PENDING};

/// How often each durable consumer's info is asked for its pending counts.
pub const CONSUMER_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples durable consumer `durable` on `stream` until `shutdown`.
pub(crate) async fn sample_consumer(
    bus: Arc<Inner>,
    stream: String,
    durable: String,
    group: Arc<str>,
    shutdown: CancellationToken,
) {
    let labels = [("stream", stream.clone()), ("group", group.to_string())];
    let pending = metrics::gauge!(CONSUMER_PENDING, &labels);
    let ack_pending = metrics::gauge!(CONSUMER_ACK_PENDING, &labels);
    let mut tick = tokio::time::interval(CONSUMER_SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let info = tokio::select! {
            _ = shutdown.cancelled() => return,
            info = tokio::time::timeout(
                bus.config.publish_timeout,
                bus.js.get_consumer_from_stream::<pull::Config, _, _>(&durable, &stream),
            ) => info,
        };
        match info {
            Ok(Ok(consumer)) => {
                let info = Consumer::cached_info(&consumer);
                pending.set(info.num_pending as f64);
                ack_pending.set(info.num_ack_pending as f64);
            }
            Ok(Err(e)) => {
                tracing::debug!(consumer = %durable, error = %e, "consumer info not sampled");
            }
            Err(_) => tracing::debug!(consumer = %durable, "consumer info timed out"),
        }
    }
}
