use std::time::Duration;

use super::{Middleware, Next};
use crate::RawMessage;
use crate::handler::HandlerFuture;

/// Re-runs the rest of the chain in-process when it fails with a retryable error, with
/// exponential backoff and jitter. Permanent errors pass through at once. When every attempt
/// fails the last error goes on to the backend, which redelivers it later (server-side backoff).
///
/// ```
/// use bus::middleware::Retry;
/// use std::time::Duration;
///
/// let retry = Retry::new(3) // the first run plus up to two retries
///     .initial_delay(Duration::from_millis(100))
///     .max_delay(Duration::from_secs(2))
///     .multiplier(2.0)
///     .jitter(0.0);
/// assert_eq!(retry.delay(1), Duration::from_millis(100));
/// assert_eq!(retry.delay(2), Duration::from_millis(200));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
    multiplier: f64,
    jitter: f64,
}

impl Retry {
    /// Up to `attempts` runs in all (at least 1); 100 ms first delay doubling up to 10 s,
    /// with 20% jitter.
    pub fn new(attempts: u32) -> Self {
        Retry {
            attempts: attempts.max(1),
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }

    /// Delay before the first retry.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Upper bound of any delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Growth factor between delays (at least 1).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier.max(1.0);
        self
    }

    /// Random spread of each delay, as a fraction in `0.0..=1.0`: 0.2 means ±20%.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Runs in all, including the first.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before retry number `retry` (1-based), jitter included.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.multiplier.powi(retry.saturating_sub(1).min(64) as i32);
        let base = self.initial_delay.as_secs_f64() * exp;
        let spread = if self.jitter > 0.0 {
            1.0 + self.jitter * (2.0 * crate::util::random_unit() - 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64((base * spread).min(self.max_delay.as_secs_f64()).max(0.0))
    }
}

impl Middleware for Retry {
    fn handle(&self, msg: RawMessage, next: Next) -> HandlerFuture {
        let policy = self.clone();
        Box::pin(async move {
            let mut attempt = 1;
            loop {
                match next.clone().run(msg.clone()).await {
                    Err(e) if e.is_retryable() && attempt < policy.attempts => {
                        tracing::debug!(attempt, error = %e, "retrying handler in-process");
                        tokio::time::sleep(policy.delay(attempt)).await;
                        attempt += 1;
                    }
                    outcome => return outcome,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let r = Retry::new(10)
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(350))
            .jitter(0.0);
        let got: Vec<_> = (1..=4).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
    }

    #[test]
    fn jitter_stays_in_range() {
        let r = Retry::new(3)
            .initial_delay(Duration::from_millis(1000))
            .jitter(0.5);
        for _ in 0..200 {
            let d = r.delay(1).as_millis();
            assert!((500..=1500).contains(&d), "{d}");
        }
    }
}
