//! JetStream-specific delivery behaviour: deduplication, in-progress acks, durable consumers
//! across bus restarts, sharing between processes, consumer updates, health.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus::testing::NatsServer;
use bus::{Delivery, Event, EventBus, EventBusConfig, HandlerError, Subscription};
use tests::Recorder;
use tests::events::Ping;

const WAIT: Duration = Duration::from_secs(20);

fn config(server: &NatsServer) -> EventBusConfig {
    let mut c = server.bus_config();
    c.consumer_name = "delivery".into();
    c.consumer.backoff = vec![Duration::from_millis(50)];
    c.drain_timeout = Duration::from_secs(10);
    c
}

async fn record(bus: &EventBus, name: &str) -> Arc<Recorder<u64>> {
    let rec = Recorder::new();
    let r = Arc::clone(&rec);
    bus.subscribe(
        Subscription::new(name, Ping::TOPIC).handler(move |e: Ping| {
            r.push(e.seq);
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .await
    .unwrap();
    rec
}

async fn stream_messages(url: &str) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let mut stream = async_nats::jetstream::new(client.clone())
        .get_stream("CQC_EVENTS")
        .await
        .unwrap();
    let n = stream.info().await.unwrap().state.messages;
    client.drain().await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_event_id_twice_is_stored_once() {
    let server = NatsServer::start().await;
    let bus = EventBus::connect(config(&server)).await.unwrap();
    let rec = record(&bus, "dedupe").await;
    let event = Ping::new(7);
    let first = bus.publish(&event).await.unwrap();
    let second = bus.publish(&event).await.unwrap();
    assert!(!first.duplicate);
    assert!(
        second.duplicate,
        "second publish inside the window is a duplicate"
    );
    assert_eq!(first.sequence, second.sequence);
    // A batch with the same ids again: all duplicates.
    let acks = bus
        .publish_batch(&[event.clone(), event.clone()])
        .await
        .unwrap();
    assert!(
        acks.iter()
            .all(|a| a.duplicate && a.sequence == first.sequence)
    );
    bus.publish(&Ping::new(8)).await.unwrap();
    rec.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.items(), [7, 8]);
    assert_eq!(stream_messages(&server.url()).await, 2);
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_longer_than_ack_wait_keeps_its_message() {
    let server = NatsServer::start().await;
    let bus = EventBus::connect(config(&server)).await.unwrap();
    let attempts = Recorder::<u32>::new();
    let finished = Arc::new(AtomicUsize::new(0));
    let (a, f) = (Arc::clone(&attempts), Arc::clone(&finished));
    bus.subscribe(
        Subscription::new("slow", Ping::TOPIC)
            .ack_wait(Duration::from_millis(900))
            .concurrency(4)
            .handler(move |_: Ping, d: Delivery| {
                a.push(d.attempt());
                let f = Arc::clone(&f);
                async move {
                    tokio::time::sleep(Duration::from_millis(3500)).await;
                    f.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    attempts.wait_for(1, WAIT).await;
    // Well past ack_wait (three times over) and a bit after the handler finished.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    assert_eq!(finished.load(Ordering::SeqCst), 1);
    assert_eq!(attempts.items(), [1], "never redelivered while running");
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_group_gets_what_was_published_while_it_was_away() {
    let server = NatsServer::start().await;
    let bus = EventBus::connect(config(&server)).await.unwrap();
    let rec = record(&bus, "returning").await;
    bus.publish(&Ping::new(0)).await.unwrap();
    rec.wait_for(1, WAIT).await;
    bus.close().await.unwrap();

    let publisher = EventBus::connect(config(&server)).await.unwrap();
    let events: Vec<Ping> = (1..=50).map(Ping::new).collect();
    publisher.publish_batch(&events).await.unwrap();

    let bus = EventBus::connect(config(&server)).await.unwrap();
    let rec = record(&bus, "returning").await;
    rec.wait_for(50, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: BTreeSet<u64> = rec.items().into_iter().collect();
    assert_eq!(got, (1..=50).collect());
    assert_eq!(
        rec.len(),
        50,
        "event 0 was acked before, so not delivered again"
    );
    bus.close().await.unwrap();
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_in_one_group_share_the_events() {
    const N: u64 = 400;
    let server = NatsServer::start().await;
    let shared = Recorder::<(usize, u64)>::new();
    let mut buses = Vec::new();
    for member in 0..2 {
        let bus = EventBus::connect(config(&server)).await.unwrap();
        let r = Arc::clone(&shared);
        bus.subscribe(
            Subscription::new("worker", Ping::TOPIC)
                .concurrency(2)
                .max_ack_pending(8)
                .handler(move |e: Ping| {
                    r.push((member, e.seq));
                    async {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        Ok::<_, HandlerError>(())
                    }
                }),
        )
        .await
        .unwrap();
        buses.push(bus);
    }
    let events: Vec<Ping> = (0..N).map(Ping::new).collect();
    buses[0].publish_batch(&events).await.unwrap();
    shared.wait_for(N as usize, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let items = shared.items();
    assert_eq!(items.len(), N as usize, "each event to one member");
    let seqs: BTreeSet<u64> = items.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (0..N).collect());
    let by_0 = items.iter().filter(|(m, _)| *m == 0).count();
    assert!(
        by_0 > 0 && by_0 < N as usize,
        "both took a share: {by_0} of {N}"
    );
    for bus in buses {
        bus.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_subscription_updates_its_durable_consumer() {
    let server = NatsServer::start().await;
    let bus = EventBus::connect(config(&server)).await.unwrap();
    bus.subscribe(
        Subscription::new("evolving", Ping::TOPIC)
            .max_deliver(3)
            .handler(|_: Ping| async { Ok::<_, HandlerError>(()) }),
    )
    .await
    .unwrap();
    bus.close().await.unwrap();
    let bus = EventBus::connect(config(&server)).await.unwrap();
    bus.subscribe(
        Subscription::new("evolving", Ping::TOPIC)
            .max_deliver(7)
            .max_ack_pending(50)
            .handler(|_: Ping| async { Ok::<_, HandlerError>(()) }),
    )
    .await
    .unwrap();
    let durable = bus::jetstream::durable_name("delivery-evolving", Ping::TOPIC.as_str()).unwrap();
    let client = async_nats::connect(server.url().as_str()).await.unwrap();
    let stream = async_nats::jetstream::new(client.clone())
        .get_stream("CQC_EVENTS")
        .await
        .unwrap();
    let info = stream.consumer_info(&durable).await.unwrap();
    assert_eq!(info.config.max_deliver, 7);
    assert_eq!(info.config.max_ack_pending, 50);
    bus.close().await.unwrap();
    client.drain().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_connection() {
    let mut server = NatsServer::start().await;
    let bus = EventBus::connect(config(&server)).await.unwrap();
    assert!(bus.check().await.is_healthy());
    server.stop().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let health = bus.check().await;
        if !health.is_healthy() {
            let bus::Health::Unhealthy(why) = health else {
                unreachable!()
            };
            assert!(
                why.contains("not connected") || why.contains("JetStream"),
                "{why}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still healthy with the server down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.start_again().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !bus.check().await.is_healthy() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not healthy again after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.close().await.unwrap();
    assert!(!bus.check().await.is_healthy());
}
