//! Test helpers (feature `testing`).
//!
//! - [`TestBus`]: a memory bus that records every publish and every handler outcome, with
//!   awaitable assertions, for unit tests of your handlers without a server. Run the test with
//!   paused time (`#[tokio::test(start_paused = true)]`) and redelivery backoff takes no real
//!   time.
//! - [`NatsServer`] and [`NatsCluster`]: throwaway `nats-server` processes for integration
//!   tests against JetStream.
//!
//! Each [`NatsServer`] runs its own `nats-server -js` on a free loopback port with a temporary
//! store, is killed when dropped, and can be stopped and started again on the same port and
//! store. [`NatsCluster`] runs three (or more) of them as a JetStream cluster on loopback.
//!
//! The binary is `$NATS_SERVER` if set, else `/usr/sbin/nats-server` (Debian's `nats-server`
//! package), else `nats-server` on `PATH`. These helpers panic with what to do when something is
//! missing or a wait fails: they are for tests, where a panic is the failure report.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use bus::testing::NatsServer;
//!
//! let server = NatsServer::start().await;
//! let bus = bus::EventBus::connect(server.bus_config()).await.unwrap();
//! // ...
//! bus.close().await.unwrap();
//! # }
//! ```

mod client;
mod nats;

pub use self::client::{DEFAULT_WAIT, Handled, Outcome, Published, TestBus};
pub use self::nats::{NatsCluster, NatsServer, NatsServerBuilder, free_port, nats_server_binary};
