use std::time::Instant;

use super::{Middleware, Next};
use crate::RawMessage;
use crate::handler::HandlerFuture;

/// Records every delivery through the [`metrics`](https://docs.rs/metrics) facade:
///
/// - counter `bus_handler_total` with labels `topic`, `group`, `outcome` (`ok` or the error
///   class: `retryable`, `timeout`, `permanent`, `decode`, `panic`);
/// - histogram `bus_handler_duration_seconds` with labels `topic`, `group`.
///
/// Install any `metrics` recorder (Prometheus exporter, StatsD, ...) to collect them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics;

/// Name of the outcome counter.
pub const HANDLER_TOTAL: &str = "bus_handler_total";
/// Name of the duration histogram.
pub const HANDLER_DURATION: &str = "bus_handler_duration_seconds";

impl Middleware for Metrics {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        let topic = msg.delivery.topic().to_owned();
        let group = msg.delivery.group().to_owned();
        let fut = next.run(msg);
        Box::pin(async move {
            let start = Instant::now();
            let outcome = fut.await;
            let elapsed = start.elapsed().as_secs_f64();
            let label = match &outcome {
                Ok(()) => "ok",
                Err(e) => e.class().as_str(),
            };
            metrics::histogram!(HANDLER_DURATION, "topic" => topic.clone(), "group" => group.clone())
                .record(elapsed);
            metrics::counter!(HANDLER_TOTAL, "topic" => topic, "group" => group, "outcome" => label)
                .increment(1);
            outcome
        })
    }
}
