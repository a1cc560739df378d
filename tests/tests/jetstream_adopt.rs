//! Joining a deployment that other services built: a stream and a durable consumer created the
//! way the Go library (nats.go) creates them, reproduced with raw JetStream API requests, and
//! events published without headers, as `js.Publish` sends them.

use std::sync::Arc;
use std::time::Duration;

use bus::config::{Retention, StartPosition, StreamManagement};
use bus::testing::NatsServer;
use bus::{Delivery, Error, Event, EventBus, EventBusConfig, HandlerError, Subscription};
use prost::Message;
use serde_json::json;
use tests::Recorder;
use tests::events::Ping;
use tests::nats::{api, stream_info, stream_messages};

const WAIT: Duration = Duration::from_secs(30);

/// `js.AddStream(&nats.StreamConfig{Name: "cqc_events", Subjects: []string{"cqc.events.v1.>"}})`:
/// the request nats.go sends, zero values included (the server fills in its defaults).
async fn go_add_stream(url: &str, retention: &str) {
    let client = async_nats::connect(url).await.unwrap();
    go_add_stream_with(&client, retention).await;
    client.drain().await.unwrap();
}

/// [`go_add_stream`] on a connection the caller made (with credentials, say).
async fn go_add_stream_with(client: &async_nats::Client, retention: &str) {
    let js = async_nats::jetstream::new(client.clone());
    let reply: serde_json::Value = js
        .request(
            "STREAM.CREATE.cqc_events".to_owned(),
            &json!({
                "name": "cqc_events", "subjects": ["cqc.events.v1.>"], "retention": retention,
                "max_consumers": 0, "max_msgs": 0, "max_bytes": 0, "discard": "old",
                "max_age": 0, "max_msgs_per_subject": 0, "max_msg_size": 0, "storage": "file",
                "num_replicas": 0, "duplicate_window": 0,
            }),
        )
        .await
        .unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
}

/// `js.Publish(subject, data)` of `n` pings: no headers, no message id.
async fn go_publish(url: &str, seqs: std::ops::Range<u64>) {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    for seq in seqs {
        let payload = Ping::new(seq).encode_to_vec();
        js.publish(Ping::TOPIC.as_str(), payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    client.drain().await.unwrap();
}

/// `js.PullSubscribe(subject, "risk", nats.ManualAck())` then fetching and acking `n` messages:
/// the durable consumer nats.go creates, and a Go service that consumed part of the stream.
async fn go_pull_subscribe_and_ack(url: &str, n: usize) {
    let reply = api(
        url,
        "CONSUMER.DURABLE.CREATE.cqc_events.risk",
        json!({
            "stream_name": "cqc_events",
            "config": {
                "durable_name": "risk", "deliver_policy": "all", "ack_policy": "explicit",
                "ack_wait": 30_000_000_000u64, "max_deliver": -1,
                "filter_subject": Ping::TOPIC.as_str(), "replay_policy": "instant",
                "max_waiting": 512, "max_ack_pending": 1000,
            },
        }),
    )
    .await;
    assert!(reply.get("error").is_none(), "{reply}");
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("risk", "cqc_events")
        .await
        .unwrap();
    use futures::StreamExt;
    let mut batch = consumer.fetch().max_messages(n).messages().await.unwrap();
    let mut acked = 0;
    while let Some(message) = batch.next().await {
        message.unwrap().double_ack().await.unwrap();
        acked += 1;
    }
    assert_eq!(acked, n, "the Go side consumed its share");
    client.drain().await.unwrap();
}

/// The CQC preset pointed at the Go-created stream.
fn joining(server: &NatsServer) -> EventBusConfig {
    let mut c = server.bus_config();
    c.stream_name = "cqc_events".into();
    c.consumer_name = "rust".into();
    c
}

async fn record(bus: &EventBus, sub: bus::SubscriptionBuilder<Ping>) -> Arc<Recorder<u64>> {
    let rec = Recorder::new();
    let r = Arc::clone(&rec);
    bus.subscribe(sub.handler(move |e: Ping| {
        r.push(e.seq);
        async { Ok::<_, HandlerError>(()) }
    }))
    .await
    .unwrap();
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_connect_names_the_stream_that_captures_the_subjects() {
    let server = NatsServer::start().await;
    go_add_stream(&server.url(), "limits").await;
    let err = EventBus::connect(server.bus_config()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`cqc_events` already captures `cqc.events.v1.>`")
            && text.contains("`stream_name` (BUS_STREAM_NAME)"),
        "{text}"
    );
    assert!(
        !text.contains("pick other"),
        "no advice to leave the subjects: {text}"
    );

    // The dead-letter subjects taken by another stream: the fix is a dead-letter setting.
    let reply = api(
        &server.url(),
        "STREAM.CREATE.ops_dlq",
        json!({ "name": "ops_dlq", "subjects": ["dlq.>"], "storage": "file" }),
    )
    .await;
    assert!(reply.get("error").is_none(), "{reply}");
    let err = EventBus::connect(joining(&server)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("`ops_dlq` already captures the dead-letter subjects `dlq.>`")
            && text.contains("BUS_DLQ_STREAM_NAME")
            && text.contains("BUS_DLQ_SUBJECT_PREFIX"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_starting_at_all_gets_the_events_stored_before_it() {
    let server = NatsServer::start().await;
    go_add_stream(&server.url(), "limits").await;
    go_publish(&server.url(), 0..200).await;

    let bus = EventBus::connect(joining(&server)).await.unwrap();
    let all = record(
        &bus,
        Subscription::new("replay", Ping::TOPIC).start(StartPosition::All),
    )
    .await;
    let new = record(&bus, Subscription::new("fresh", Ping::TOPIC)).await;
    bus.publish(&Ping::new(200)).await.unwrap();
    all.wait_for(201, WAIT).await;
    new.wait_for(1, WAIT).await;
    let mut seen = all.items();
    seen.sort_unstable();
    assert_eq!(seen, (0..=200).collect::<Vec<_>>());
    assert_eq!(new.items(), [200], "the default start is `new`");

    let by_sequence = record(
        &bus,
        Subscription::new("from_seq", Ping::TOPIC).start(StartPosition::Sequence(151)),
    )
    .await;
    by_sequence.wait_for(51, WAIT).await;
    assert_eq!(
        by_sequence.items().iter().min(),
        Some(&150),
        "stream sequence 151 is ping 150"
    );
    let last = record(
        &bus,
        Subscription::new("last", Ping::TOPIC).start(StartPosition::Last),
    )
    .await;
    last.wait_for(1, WAIT).await;
    assert_eq!(last.items(), [200]);
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_durable_continues_where_the_go_consumer_stopped() {
    let server = NatsServer::start().await;
    go_add_stream(&server.url(), "limits").await;
    go_publish(&server.url(), 0..100).await;
    go_pull_subscribe_and_ack(&server.url(), 60).await;

    let bus = EventBus::connect(joining(&server)).await.unwrap();
    let rec = record(&bus, Subscription::new("risk", Ping::TOPIC).durable("risk")).await;
    rec.wait_for(40, WAIT).await;
    let mut seen = rec.items();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (60..100).collect::<Vec<_>>(),
        "nothing the Go service acked comes again"
    );

    // No `Nats-Msg-Id` on these: a typed handler's delivery gives the payload's `event_id`.
    let ids = Recorder::new();
    let r = Arc::clone(&ids);
    bus.subscribe(
        Subscription::new("ids", Ping::TOPIC)
            .start(StartPosition::All)
            .handler(move |e: Ping, d: Delivery| {
                r.push((e.seq, d.event_id().map(str::to_owned)));
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .unwrap();
    ids.wait_for(100, WAIT).await;
    for (seq, id) in ids.items() {
        assert_eq!(id, Some(format!("ping-{seq}")));
    }
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_never_creates_or_changes_and_none_sends_no_stream_request() {
    let server = NatsServer::start().await;
    let mut c = server.bus_config();
    c.stream.management = StreamManagement::Verify;
    let text = EventBus::connect(c.clone()).await.unwrap_err().to_string();
    assert!(
        text.contains("does not exist") && text.contains("BUS_STREAM_MANAGEMENT"),
        "{text}"
    );
    assert!(
        api(&server.url(), "STREAM.INFO.CQC_EVENTS", json!({}))
            .await
            .get("error")
            .is_some(),
        "verify created nothing"
    );

    go_add_stream(&server.url(), "limits").await;
    let mut c = joining(&server);
    c.stream.management = StreamManagement::Verify;
    c.stream.subjects.push("audit.>".into());
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::StreamMismatch {
                variable: "BUS_STREAM_SUBJECTS",
                ..
            }
        ),
        "{err}"
    );
    let subjects = stream_info(&server.url(), "cqc_events").await["config"]["subjects"].clone();
    assert_eq!(subjects, json!(["cqc.events.v1.>"]), "verify added nothing");

    // `none`: no stream request at all, so a stream that differs does not matter.
    let mut c = joining(&server);
    c.stream.management = StreamManagement::None;
    c.stream.storage = bus::config::Storage::Memory;
    let bus = EventBus::connect(c).await.unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.close().await.unwrap();
    assert_eq!(stream_messages(&server.url(), "cqc_events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_mismatch_is_named_and_fixed_by_the_setting() {
    let server = NatsServer::start().await;
    go_add_stream(&server.url(), "interest").await;
    let err = EventBus::connect(joining(&server)).await.unwrap_err();
    match &err {
        Error::StreamMismatch {
            stream,
            setting,
            variable,
            existing,
            configured,
        } => {
            assert_eq!(stream, "cqc_events");
            assert_eq!(
                (*setting, *variable),
                ("stream.retention", "BUS_STREAM_RETENTION")
            );
            assert_eq!(
                (existing.as_str(), configured.as_str()),
                ("interest", "limits")
            );
        }
        other => panic!("expected StreamMismatch, got {other}"),
    }
    let mut c = joining(&server);
    c.stream.retention = Retention::Interest;
    let bus = EventBus::connect(c).await.unwrap();
    let rec = record(&bus, Subscription::new("interested", Ping::TOPIC)).await;
    bus.publish(&Ping::new(7)).await.unwrap();
    rec.wait_for(1, WAIT).await;
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_refuses_a_second_group_on_overlapping_filters_clearly() {
    let server = NatsServer::start().await;
    let mut c = server.bus_config();
    c.stream.retention = Retention::WorkQueue;
    let bus = EventBus::connect(c).await.unwrap();
    let _first = record(&bus, Subscription::new("first", Ping::TOPIC)).await;
    let second = bus
        .subscribe(
            Subscription::new("second", Ping::TOPIC)
                .handler(|_: Ping| async { Ok::<_, HandlerError>(()) }),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        second.contains("workqueue") && second.contains("BUS_STREAM_RETENTION"),
        "{second}"
    );
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_service_starts_beside_a_stream_it_may_not_change() {
    // The stream differs from this service's configuration in one setting (storage), and the
    // service has no permission for the stream API: with `none` it still publishes.
    let server = NatsServer::builder()
        .config(
            r#"
            authorization {
              users: [
                { user: admin, password: admin }
                { user: publisher, password: publisher,
                  permissions: { publish: { deny: ["$JS.API.STREAM.>"] } } }
              ]
            }
            "#,
        )
        .start()
        .await;
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin".into())
        .connect(server.url())
        .await
        .unwrap();
    go_add_stream_with(&admin, "limits").await;

    let mut c = joining(&server);
    c.auth.user = Some("publisher".into());
    c.auth.password = Some("publisher".into());
    c.stream.storage = bus::config::Storage::Memory;
    let refused = EventBus::connect(c.clone()).await.unwrap_err();
    assert!(!refused.to_string().is_empty());
    c.stream.management = StreamManagement::None;
    let bus = EventBus::connect(c).await.unwrap();
    for seq in 0..5 {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    bus.close().await.unwrap();
    let js = async_nats::jetstream::new(admin);
    let mut stream = js.get_stream("cqc_events").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 5);
}
