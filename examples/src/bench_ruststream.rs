//! The peer: RustStream-nats 0.7 (crates.io `ruststream-nats`, with `ruststream` 0.7) on the same
//! events against the same server, for `bench jetstream --compare-ruststream`.
//!
//! It uses RustStream's broker layer directly, the way one of its services publishes and reads a
//! stream: `JetStreamPublisher::publish_ack` (the message id through `JetStreamOptions`, the type
//! name as a header, 1 000 publishes in flight as the bus's batch keeps), and a
//! `JetStreamSubject` pull subscriber whose messages are decoded and acknowledged one by one.
//! RustStream's router and codecs are not in the path, so its figures are what any RustStream
//! service pays at least.

use std::time::Duration;

use async_nats::jetstream::context::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;
use ruststream::{
    Broker, ConnectedBroker, HeaderMap, IncomingMessage, OutgoingMessage, Subscriber,
};
use ruststream_nats::{
    ConnectedNatsBroker, DeliverPolicy, JetStreamOptions, JetStreamPublish, JetStreamPublisher,
    JetStreamSubject, NatsBroker,
};

use crate::bench_common::{Counter, Sample, Timer, within};
use crate::bench_jetstream::{JsBenchPrice, event};
use bus::Event;

/// The peer's stream and subject: the same settings as the others, a subject of the same
/// length and token count.
pub const STREAM: &str = "RUSTSTREAM_BENCH";
const SUBJECT: &str = "cqc.rsxevt.v1.js_bench_price";
const WINDOW: usize = 1_000;

/// A connected RustStream-nats broker and its JetStream publisher.
pub struct Peer {
    broker: ConnectedNatsBroker,
    publisher: JetStreamPublisher,
}

impl Peer {
    /// When `wanted`, connects to `url` and creates the peer's stream (file storage, Limits,
    /// 2-minute duplicate window) through `js` unless it exists.
    ///
    /// # Panics
    ///
    /// When the broker cannot connect or the stream cannot be created.
    pub async fn connect(wanted: bool, url: &str, js: &Context) -> Option<Peer> {
        if !wanted {
            return None;
        }
        let created: serde_json::Value = js
            .request(
                format!("STREAM.CREATE.{STREAM}"),
                &serde_json::json!({
                    "name": STREAM, "subjects": ["cqc.rsxevt.v1.>"], "retention": "limits",
                    "storage": "file", "num_replicas": 1,
                    "duplicate_window": 120_000_000_000u64, "discard": "old",
                }),
            )
            .await
            .expect("creating the RustStream stream");
        assert!(
            created.get("error").is_none()
                || created.pointer("/error/err_code") == Some(&10058.into()),
            "creating stream {STREAM}: {created}"
        );
        let broker = NatsBroker::new(url)
            .connect()
            .await
            .expect("connecting RustStream-nats");
        let publisher = broker.publisher(JetStreamPublish::default());
        Some(Peer { broker, publisher })
    }

    /// Publishes `n` events with up to 1 000 acknowledgements in flight.
    pub async fn pipelined(&self, run: &str, round: usize, n: u64) -> Sample {
        let events: Vec<JsBenchPrice> = (0..n).map(|s| event(run, round, s, 0)).collect();
        let options: Vec<JetStreamOptions> = events
            .iter()
            .map(|e| JetStreamOptions {
                message_id: Some(e.event_id.clone()),
                ..JetStreamOptions::default()
            })
            .collect();
        let t = Timer::start();
        let mut acks = FuturesUnordered::new();
        for (e, opts) in events.iter().zip(&options) {
            if acks.len() >= WINDOW {
                let ack: Option<Result<_, _>> = acks.next().await;
                ack.expect("an ack").expect("RustStream publish");
            }
            let mut headers = HeaderMap::new();
            headers.insert(bus::headers::EVENT_TYPE, JsBenchPrice::FULL_NAME);
            let msg = OutgoingMessage::produced(SUBJECT, e.encode_to_vec().as_slice().into())
                .with_headers(headers);
            acks.push(self.publisher.publish_ack(msg, Some(opts)));
        }
        within(
            format!("{n} RustStream publishes to be acknowledged"),
            async {
                while let Some(a) = acks.next().await {
                    a.expect("RustStream publish");
                }
            },
        )
        .await;
        t.finish(n)
    }

    /// Fills the stream with `n` events, then times a durable pull subscriber that decodes and
    /// acknowledges each of them.
    pub async fn consume(&self, js: &Context, run: &str, round: usize, n: u64) -> Sample {
        self.pipelined(run, round, n).await;
        let durable = format!("rs_consume_{round}");
        let _: serde_json::Value = js
            .request(
                format!("CONSUMER.DELETE.{STREAM}.{durable}"),
                &serde_json::json!({}),
            )
            .await
            .expect("deleting a consumer");
        let t = Timer::start();
        let mut subscriber = self
            .broker
            .subscribe_with(
                JetStreamSubject::new(SUBJECT, STREAM)
                    .durable(durable.clone())
                    .max_ack_pending(4096)
                    .deliver_policy(DeliverPolicy::All),
            )
            .await
            .expect("RustStream subscribe");
        let got = Counter::untargeted();
        let consume = async {
            let mut messages = subscriber.stream();
            while got.get() < n {
                let m = messages
                    .next()
                    .await
                    .expect("the RustStream subscription ended")
                    .expect("RustStream message");
                std::hint::black_box(JsBenchPrice::decode(m.payload()).expect("decodes"));
                m.ack().await.expect("RustStream ack");
                got.hit();
            }
        };
        within(
            format!("the RustStream subscriber `{durable}` to receive {n} messages"),
            consume,
        )
        .await;
        let sample = t.finish(n);
        drop(subscriber);
        let _: serde_json::Value = js
            .request(
                format!("CONSUMER.DELETE.{STREAM}.{durable}"),
                &serde_json::json!({}),
            )
            .await
            .expect("deleting a consumer");
        sample
    }

    /// Purges the peer's stream.
    pub async fn purge(js: &Context) {
        let _: serde_json::Value = js
            .request(format!("STREAM.PURGE.{STREAM}"), &serde_json::json!({}))
            .await
            .expect("purging the RustStream stream");
    }

    /// Shuts the broker down.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.broker.shutdown()).await;
    }
}
