//! What every benchmark suite shares: timers that take CPU time too, medians, run ids, and
//! waits that end in a failure naming what they waited for.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// How long one phase may wait for the server or for deliveries before the benchmark fails.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Awaits `fut` for at most [`PHASE_TIMEOUT`].
///
/// # Panics
///
/// When the time is up, with `what` in the message: a benchmark that cannot finish a phase fails
/// instead of hanging.
pub async fn within<F: Future>(what: impl std::fmt::Display, fut: F) -> F::Output {
    match tokio::time::timeout(PHASE_TIMEOUT, fut).await {
        Ok(out) => out,
        Err(_) => panic!(
            "timed out after {} s waiting for {what}",
            PHASE_TIMEOUT.as_secs()
        ),
    }
}

/// An id for this run (seconds and nanoseconds of the start time, in base 36), part of every
/// event id a suite publishes: a later run against the same server never repeats an id still in
/// the stream's duplicate window (a repeated id is acknowledged as a duplicate and not stored,
/// and a consumer waiting for it would wait forever).
pub fn run_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut n = now.as_secs() * 1_000_000_000 + u64::from(now.subsec_nanos());
    let mut id = Vec::new();
    while n > 0 {
        id.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    id.reverse();
    String::from_utf8(id).expect("ascii")
}

/// Counts deliveries and wakes whoever waits for the target count. Counting is one atomic add;
/// only the count that reaches the target wakes the waiter.
#[derive(Debug)]
pub struct Counter {
    count: AtomicU64,
    target: u64,
    notify: Notify,
}

impl Counter {
    /// A new counter at zero that wakes [`wait`](Self::wait) at `target`.
    pub fn new(target: u64) -> Arc<Self> {
        Arc::new(Counter {
            count: AtomicU64::new(0),
            target,
            notify: Notify::new(),
        })
    }

    /// A counter nobody waits on (progress only).
    pub fn untargeted() -> Arc<Self> {
        Counter::new(u64::MAX)
    }

    /// Counts one.
    pub fn hit(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            // `notify_one` stores a permit, so a waiter that is not yet waiting still wakes.
            self.notify.notify_one();
        }
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits until the count reaches the target.
    ///
    /// # Panics
    ///
    /// After [`PHASE_TIMEOUT`] without reaching it, naming `what` and the count reached.
    pub async fn wait(&self, what: &str) {
        if self.get() >= self.target {
            return;
        }
        if tokio::time::timeout(PHASE_TIMEOUT, self.notify.notified())
            .await
            .is_err()
        {
            panic!(
                "timed out after {} s waiting for {what}: {} of {} arrived",
                PHASE_TIMEOUT.as_secs(),
                self.get(),
                self.target
            );
        }
    }
}

/// One measurement: events per second (wall clock) and CPU time per event.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Events per second.
    pub rate: f64,
    /// This process's CPU microseconds per event.
    pub cpu_us: f64,
    /// The server's CPU microseconds per event (0 when the server's pid is unknown).
    pub server_cpu_us: f64,
}

/// Wall clock and CPU time of this process (all threads) and, if known, of the server.
#[derive(Debug)]
pub struct Timer {
    wall: Instant,
    cpu: f64,
    server_pid: Option<u32>,
    server_cpu: f64,
}

impl Timer {
    /// Starts measuring this process only.
    pub fn start() -> Self {
        Timer::with_server(None)
    }

    /// Starts measuring this process and the server process `server_pid`.
    pub fn with_server(server_pid: Option<u32>) -> Self {
        Timer {
            wall: Instant::now(),
            cpu: process_cpu_seconds(None),
            server_pid,
            server_cpu: server_pid.map_or(0.0, |p| process_cpu_seconds(Some(p))),
        }
    }

    /// The sample for `events` events since the start.
    pub fn finish(&self, events: u64) -> Sample {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = process_cpu_seconds(None) - self.cpu;
        let server = self
            .server_pid
            .map_or(0.0, |p| process_cpu_seconds(Some(p)) - self.server_cpu);
        Sample {
            rate: events as f64 / wall,
            cpu_us: cpu * 1e6 / events as f64,
            server_cpu_us: server * 1e6 / events as f64,
        }
    }
}

/// User plus system CPU seconds of a process (this one for `None`) from `/proc/<pid>/stat`
/// (Linux; 0 elsewhere).
pub fn process_cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Clock ticks are 100 per second on Linux (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

/// The median of `f` over the samples.
pub fn median_of(v: &[Sample], f: impl Fn(&Sample) -> f64) -> f64 {
    median(v.iter().map(f).collect())
}

/// The median of `v` (the upper one of an even count).
///
/// # Panics
///
/// When `v` is empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nanoseconds since `start`, saturating.
pub fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::{Counter, median, run_id};

    #[test]
    fn run_ids_differ_between_runs_and_fit_a_message_id() {
        let a = run_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = run_id();
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert!(a.len() <= 13, "{a}");
    }

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![0.6, 0.4, 0.9, 0.38, 0.59]), 0.59);
    }

    #[tokio::test]
    async fn a_counter_wakes_its_waiter_at_the_target_even_if_reached_first() {
        let counter = Counter::new(3);
        for _ in 0..3 {
            counter.hit();
        }
        counter.wait("three hits").await;
        assert_eq!(counter.get(), 3);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 60 s waiting for nothing: 1 of 2 arrived")]
    async fn a_counter_that_never_reaches_its_target_fails_naming_what_it_waited_for() {
        tokio::time::pause();
        let counter = Counter::new(2);
        counter.hit();
        counter.wait("nothing").await;
    }
}
