//! Stopping a service gracefully: wait for SIGTERM or SIGINT (what Kubernetes, systemd and a
//! terminal send), or for a token the caller cancels, then [`close`](crate::EventBus::close) the
//! bus so running handlers finish and acknowledge before the process exits.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), bus::Error> {
//! let bus = bus::EventBus::connect(bus::EventBusConfig::from_env()?).await?;
//! // bus.subscribe(...).await?;
//! bus.run_until_shutdown().await?; // returns after SIGTERM or Ctrl-C, once the bus is closed
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;

use crate::{Error, EventBus};

/// The signal that asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// `SIGTERM`: what Kubernetes, systemd and `kill` send.
    Terminate,
    /// `SIGINT`: Ctrl-C in a terminal.
    Interrupt,
}

impl fmt::Display for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        })
    }
}

/// Waits for the first `SIGTERM` or `SIGINT` (on platforms without `SIGTERM`, for Ctrl-C).
///
/// The signal handlers are installed when the future is first polled, so create and poll it
/// (e.g. in `tokio::select!`, or through [`EventBus::run_until_shutdown`]) before the work that
/// should be protected begins. Once installed they stay for the life of the process: a second
/// signal does not kill it while the bus drains; the drain is bounded by `drain_timeout`.
///
/// # Errors
///
/// When a signal handler cannot be installed (no Tokio runtime with signal support).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let signal = bus::shutdown_signal().await?;
/// eprintln!("{signal}: stopping");
/// # Ok(()) }
/// ```
pub async fn shutdown_signal() -> std::io::Result<ShutdownSignal> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = terminate.recv() => Ok(ShutdownSignal::Terminate),
            _ = interrupt.recv() => Ok(ShutdownSignal::Interrupt),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok(ShutdownSignal::Interrupt)
    }
}

impl EventBus {
    /// Runs until `shutdown` completes, then closes the bus (see [`close`](Self::close)):
    /// no new messages are taken, running handlers finish and settle within `drain_timeout`,
    /// publishes are flushed. Pass a `CancellationToken`'s `cancelled()` future to stop from
    /// code you own, or use [`run_until_shutdown`](Self::run_until_shutdown) for signals.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), bus::Error> {
    /// use tokio_util::sync::CancellationToken;
    ///
    /// let bus = bus::EventBus::memory();
    /// let stop = CancellationToken::new();
    /// let running = tokio::spawn({
    ///     let (bus, stop) = (bus.clone(), stop.clone());
    ///     async move { bus.run_until(stop.cancelled_owned()).await }
    /// });
    /// stop.cancel();
    /// running.await.expect("not panicked")?;
    /// assert!(!bus.check().await.is_healthy());
    /// # Ok(()) }
    /// ```
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        shutdown.await;
        self.close().await
    }

    /// Runs until the process gets `SIGTERM` or `SIGINT`, then closes the bus gracefully
    /// (see [`run_until`](Self::run_until)) and returns the signal.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the signal handlers cannot be installed (no Tokio runtime with
    /// signal support), or what [`close`](Self::close) returns.
    pub async fn run_until_shutdown(&self) -> Result<ShutdownSignal, Error> {
        let signal = shutdown_signal().await.map_err(|e| {
            Error::Config(format!(
                "cannot listen for SIGTERM/SIGINT ({e}); run inside a Tokio runtime with signal \
                 support, or stop the bus with `run_until` and a future you own"
            ))
        })?;
        tracing::info!(%signal, "shutting down: waiting for running handlers");
        self.close().await?;
        Ok(signal)
    }
}
