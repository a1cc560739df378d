//! On JetStream with one setting: the subjects of the events stream.

mod common;

use bus::testing::NatsServer;
use bus::{EventBus, EventBusConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_runs_on_jetstream_with_one_setting() {
    let server = NatsServer::start().await;
    let mut config = EventBusConfig::jetstream([server.url()]);
    config.stream.subjects = vec!["acme.shipping.events.v1.>".into()];
    let bus = EventBus::connect(config)
        .await
        .expect("connects and creates the stream");
    common::ships_parcels(bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_subjects_jetstream_says_what_to_set() {
    let server = NatsServer::start().await;
    let err = EventBus::connect(EventBusConfig::jetstream([server.url()]))
        .await
        .expect_err("JetStream needs to know what its stream captures");
    let err = err.to_string();
    assert!(
        err.contains("BUS_STREAM_SUBJECTS") && err.contains("stream.subjects"),
        "{err}"
    );
}
