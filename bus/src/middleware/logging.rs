use std::time::Instant;

use tracing::{Instrument, Level};

use super::{Middleware, Next};
use crate::handler::HandlerFuture;
use crate::{HandlerError, RawMessage};

/// One `tracing` span per delivery, named `bus.handle`, with the fields `topic`, `event_type`,
/// `event_id`, `attempt`, `group` and, when the delivery belongs to a trace, `trace_id` (the
/// consumer span's with the `otel` feature, else the one the message's `traceparent` carries);
/// when the chain finishes, one event with the `outcome`
/// (`ok`, or the error class) and `duration_ms`.
///
/// Successes are logged at the configured level (default `INFO`); retryable failures at
/// `WARN`, permanent ones at `ERROR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logging {
    level: Level,
}

impl Default for Logging {
    fn default() -> Self {
        Logging { level: Level::INFO }
    }
}

impl Logging {
    /// Logging at `INFO`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Logging of spans and successes at `level`.
    pub fn level(level: Level) -> Self {
        Logging { level }
    }
}

macro_rules! span_at {
    ($level:expr, $($fields:tt)*) => {
        match $level {
            Level::TRACE => tracing::trace_span!($($fields)*),
            Level::DEBUG => tracing::debug_span!($($fields)*),
            Level::INFO => tracing::info_span!($($fields)*),
            Level::WARN => tracing::warn_span!($($fields)*),
            _ => tracing::error_span!($($fields)*),
        }
    };
}

macro_rules! event_at {
    ($level:expr, $($fields:tt)*) => {
        match $level {
            Level::TRACE => tracing::trace!($($fields)*),
            Level::DEBUG => tracing::debug!($($fields)*),
            Level::INFO => tracing::info!($($fields)*),
            Level::WARN => tracing::warn!($($fields)*),
            _ => tracing::error!($($fields)*),
        }
    };
}

impl Middleware for Logging {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        let level = self.level;
        let d = &msg.delivery;
        let span = span_at!(
            level,
            "bus.handle",
            topic = d.topic(),
            event_type = d.event_type().unwrap_or(""),
            event_id = d.event_id().unwrap_or(""),
            attempt = d.attempt(),
            group = d.group(),
            trace_id = tracing::field::Empty,
        );
        if let Some(id) = crate::trace::trace_id(d) {
            span.record("trace_id", format_args!("{id:032x}"));
        }
        let fut = next.run(msg);
        Box::pin(
            async move {
                let start = Instant::now();
                let outcome = fut.await;
                let duration_ms = start.elapsed().as_secs_f64() * 1e3;
                match &outcome {
                    Ok(()) => event_at!(level, outcome = "ok", duration_ms, "event handled"),
                    Err(e) => log_failure(e, duration_ms),
                }
                outcome
            }
            .instrument(span),
        )
    }
}

fn log_failure(e: &HandlerError, duration_ms: f64) {
    let outcome = e.class().as_str();
    if e.is_retryable() {
        tracing::warn!(outcome, duration_ms, error = %e, "handler failed, will be retried");
    } else {
        tracing::error!(outcome, duration_ms, error = %e, "handler failed permanently");
    }
}
