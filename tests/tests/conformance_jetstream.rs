//! The backend conformance suite on JetStream: each test gets its own `nats-server`.

use bus::testing::NatsServer;
use bus::{BackendKind, EventBus, EventBusConfig};
use tests::conformance::TestBus;

async fn jetstream(mut config: EventBusConfig) -> TestBus {
    let server = NatsServer::start().await;
    config.backend = BackendKind::JetStream;
    config.servers = vec![server.url()];
    let bus = EventBus::connect(config).await.expect("JetStream bus");
    TestBus::new(bus, server)
}

tests::conformance_suite!(jetstream);
