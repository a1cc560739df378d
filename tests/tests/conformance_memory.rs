//! The backend conformance suite on the memory backend.

use bus::{EventBus, EventBusConfig};
use tests::conformance::TestBus;

async fn memory(config: EventBusConfig) -> TestBus {
    TestBus::new(EventBus::connect(config).await.expect("memory bus"), ())
}

tests::conformance_suite!(memory);
