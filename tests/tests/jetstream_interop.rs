//! Interop with services that do not use this library: raw protobuf in, raw protobuf out.

use std::sync::Arc;
use std::time::Duration;

use bus::testing::NatsServer;
use bus::{Delivery, Event, EventBus, HandlerError, Subscription, Topic, headers};
use futures::StreamExt;
use prost::Message;
use tests::Recorder;

const WAIT: Duration = Duration::from_secs(20);

/// `cqc.events.v1.AssetCreated` with the wire schema's field numbers (the nested `asset` and
/// `timestamp` fields are left out: unknown fields are skipped by protobuf decoding).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AssetCreated {
    /// Field 1.
    #[prost(string, tag = "1")]
    pub event_id: String,
    /// Field 3.
    #[prost(string, tag = "3")]
    pub actor_id: String,
    /// Field 5.
    #[prost(string, tag = "5")]
    pub source: String,
}

impl Event for AssetCreated {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.asset_created");
    const EVENT_TYPE: &'static str = "asset_created";
    const FULL_NAME: &'static str = "cqc.events.v1.AssetCreated";
    fn event_id(&self) -> Option<&str> {
        Some(self.event_id.as_str()).filter(|id| !id.is_empty())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protobuf_without_headers_reaches_a_typed_handler() {
    let server = NatsServer::start().await;
    let mut config = server.bus_config();
    config.consumer_name = "interop".into();
    let bus = EventBus::connect(config).await.unwrap();
    let rec = Recorder::<(AssetCreated, Delivery)>::new();
    let r = Arc::clone(&rec);
    bus.subscribe(Subscription::new("on_asset", AssetCreated::TOPIC).handler(
        move |e: AssetCreated, d: Delivery| {
            r.push((e, d));
            async { Ok::<_, HandlerError>(()) }
        },
    ))
    .await
    .unwrap();

    // A Go service: plain JetStream publish, protobuf bytes, no headers at all. Field 2 (a
    // Timestamp this struct does not model) is on the wire too.
    let event = AssetCreated {
        event_id: "go-1".into(),
        actor_id: "alice".into(),
        source: "go-service".into(),
    };
    let mut bytes = event.encode_to_vec();
    bytes.extend_from_slice(&[0x12, 0x02, 0x08, 0x01]); // field 2: Timestamp { seconds: 1 }
    let client = async_nats::connect(server.url().as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.publish("cqc.events.v1.asset_created", bytes.into())
        .await
        .unwrap()
        .await
        .unwrap();

    rec.wait_for(1, WAIT).await;
    let (got, d) = rec.items().remove(0);
    assert_eq!(got, event);
    assert!(d.headers().is_empty(), "{:?}", d.headers());
    assert_eq!(
        d.event_id(),
        Some("go-1"),
        "no header: the id in the payload"
    );
    assert_eq!(d.topic(), "cqc.events.v1.asset_created");
    bus.close().await.unwrap();
    client.drain().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_bus_publishes_is_plain_protobuf() {
    let server = NatsServer::start().await;
    let bus = EventBus::connect(server.bus_config()).await.unwrap();
    let event = AssetCreated {
        event_id: "rust-1".into(),
        actor_id: "bob".into(),
        source: "rust-service".into(),
    };
    bus.publish(&event).await.unwrap();

    // A service without this library reads it with a plain consumer.
    let client = async_nats::connect(server.url().as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("CQC_EVENTS").await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("plain_reader".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(5))
        .messages()
        .await
        .unwrap();
    let msg = batch.next().await.expect("one message").unwrap();
    assert_eq!(msg.subject.as_str(), "cqc.events.v1.asset_created");
    assert_eq!(&msg.payload[..], &event.encode_to_vec()[..], "no envelope");
    assert_eq!(AssetCreated::decode(msg.payload.clone()).unwrap(), event);
    let h = msg.headers.as_ref().expect("headers");
    assert_eq!(h.get(headers::MSG_ID).map(|v| v.as_str()), Some("rust-1"));
    assert_eq!(
        h.get(headers::EVENT_TYPE).map(|v| v.as_str()),
        Some("cqc.events.v1.AssetCreated")
    );
    msg.ack().await.unwrap();
    bus.close().await.unwrap();
    client.drain().await.unwrap();
}
