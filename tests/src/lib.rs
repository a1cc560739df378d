//! Shared code of the workspace tests: test events, a recorder to wait on, and the backend
//! conformance suite that every backend runs unchanged.

pub mod conformance;
pub mod events;
pub mod nats;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Collects values from handlers and lets a test wait until enough arrived.
#[derive(Debug)]
pub struct Recorder<T> {
    items: Mutex<Vec<T>>,
    changed: Notify,
}

impl<T: Clone> Recorder<T> {
    /// An empty recorder, shared.
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder {
            items: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    /// Records a value.
    pub fn push(&self, item: T) {
        self.items.lock().unwrap().push(item);
        self.changed.notify_waiters();
    }

    /// A copy of what was recorded.
    pub fn items(&self) -> Vec<T> {
        self.items.lock().unwrap().clone()
    }

    /// How many values were recorded.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `pred` holds for the recorded values, or panics after `timeout` with what
    /// was recorded.
    pub async fn wait_until(&self, timeout: Duration, what: &str, pred: impl Fn(&[T]) -> bool)
    where
        T: std::fmt::Debug,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            {
                let items = self.items.lock().unwrap();
                if pred(&items) {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let items = self.items.lock().unwrap();
                if pred(&items) {
                    return;
                }
                let n = items.len();
                let tail: Vec<_> = items.iter().rev().take(5).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {n} recorded, last: {tail:?}"
                );
            }
        }
    }

    /// Waits until at least `n` values were recorded.
    pub async fn wait_for(&self, n: usize, timeout: Duration)
    where
        T: std::fmt::Debug,
    {
        self.wait_until(timeout, &format!("{n} values"), |items| items.len() >= n)
            .await;
    }
}
