//! The bus's own tasks (one delivery worker per subscription, and its helpers): spawned, owned,
//! stopped and waited for by the bus. A panic in one of them (a bug in the bus, not in a
//! handler: handlers' panics are caught and dead-lettered) is logged and makes
//! [`EventBus::check`](crate::EventBus::check) unhealthy, instead of silently ending a
//! subscription.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::middleware::panic_message;
use crate::util::lock;

/// The tasks of one bus.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
}

impl Tasks {
    /// Cancelled when the bus closes; tasks stop when it is.
    pub(crate) fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs `task` until it ends; `what` names it in logs and in `check()`.
    pub(crate) fn spawn(&self, what: String, task: impl Future<Output = ()> + Send + 'static) {
        let failure = Arc::clone(&self.failure);
        self.tracker.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                let message = panic_message(&*panic);
                tracing::error!(task = %what, panic = message, "a bus task panicked and stopped");
                lock(&failure).get_or_insert(format!("{what} stopped: it panicked: {message}"));
            }
        });
    }

    /// Tells every task to stop, and waits until they have.
    pub(crate) async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Waits until every task has stopped (after [`stop`](Self::stop) began).
    pub(crate) async fn wait(&self) {
        self.tracker.wait().await;
    }

    /// The first task that died, if one did.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_reported() {
        let tasks = Tasks::default();
        tasks.spawn("worker of `h`".into(), async { panic!("boom") });
        tasks.spawn("quiet".into(), async {});
        tasks.stop().await;
        let failure = tasks.failure().expect("recorded");
        assert!(
            failure.contains("worker of `h`") && failure.contains("boom"),
            "{failure}"
        );
    }
}
