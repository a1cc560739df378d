//! Behaviour specific to the memory backend: bounded queues with backpressure, handlers that
//! publish, and the dead letters it keeps.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bus::{Error, Event, EventBus, EventBusConfig, HandlerError, MemoryBus, Subscription};
use prost::Message;
use tests::Recorder;
use tests::events::{Ping, Pong};
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(20);

fn small_queues(capacity: usize) -> EventBusConfig {
    let mut config = EventBusConfig::memory();
    config.memory_queue_capacity = capacity;
    config.consumer.backoff = vec![Duration::from_millis(10)];
    config
}

/// A handler that publishes into another slow subscription's full queue waits for room; the bus
/// keeps moving and every event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_that_publish_do_not_deadlock() {
    const N: u64 = 500;
    let mut config = small_queues(4);
    // A handler stuck on its own full queue gets a retryable timeout after this long, and its
    // event is redelivered: the bus slows down instead of deadlocking.
    config.publish_timeout = Duration::from_millis(200);
    let bus: EventBus = MemoryBus::new(config).unwrap().into();
    let pongs = Recorder::<u64>::new();
    let p = Arc::clone(&pongs);
    bus.subscribe(
        Subscription::new("pong", Pong::TOPIC)
            .concurrency(2)
            .handler(move |e: Pong| {
                p.push(e.seq);
                async {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    let relay = bus.clone();
    bus.subscribe(
        Subscription::new("relay", Ping::TOPIC)
            .concurrency(8)
            .handler(move |e: Ping| {
                let bus = relay.clone();
                async move {
                    bus.publish(&Pong { seq: e.seq }).await?;
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    // A handler that publishes into its own (small, full) queue also makes progress.
    let chain = Recorder::<u64>::new();
    let (c, looper) = (Arc::clone(&chain), bus.clone());
    bus.subscribe(
        Subscription::new("self_loop", Ping::TOPIC)
            .concurrency(2)
            .handler(move |e: Ping| {
                c.push(e.seq);
                let bus = looper.clone();
                async move {
                    if e.seq < 3 && e.note.is_empty() {
                        bus.publish(&Ping {
                            note: "echo".into(),
                            ..Ping::new(e.seq + N)
                        })
                        .await?;
                    }
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    for seq in 0..N {
        // While the self-loop is stuck on its own queue the publisher may get the retryable
        // timeout too; it retries as the error says (the ids make a retry safe).
        let mut tries = 0;
        while let Err(e) = bus.publish(&Ping::new(seq)).await {
            assert!(e.is_retryable(), "{e}");
            tries += 1;
            assert!(tries < 50, "publish kept timing out: {e}");
        }
    }
    pongs
        .wait_until(WAIT, "every pong", |s| {
            s.iter().collect::<BTreeSet<_>>().len() >= N as usize + 3
        })
        .await;
    chain.wait_for(N as usize + 3, WAIT).await;
    bus.close().await.unwrap();
}

/// With the queue full and the handler stuck, a publish waits `publish_timeout` and then fails
/// with a retryable timeout. Every publish that succeeded is delivered once the handler moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_pushes_back_on_the_publisher() {
    let mut config = small_queues(2);
    config.publish_timeout = Duration::from_millis(100);
    let bus: EventBus = MemoryBus::new(config).unwrap().into();
    let gate = Arc::new(Semaphore::new(0));
    let got = Recorder::<u64>::new();
    let (g, r) = (Arc::clone(&gate), Arc::clone(&got));
    bus.subscribe(
        Subscription::new("stuck", Ping::TOPIC)
            .ordered()
            .handler(move |e: Ping| {
                let (g, r) = (Arc::clone(&g), Arc::clone(&r));
                async move {
                    g.acquire().await.unwrap().forget();
                    r.push(e.seq);
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    let mut accepted = Vec::new();
    let mut refused = None;
    for seq in 0..50 {
        match bus.publish(&Ping::new(seq)).await {
            Ok(_) => accepted.push(seq),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("a bounded queue refuses eventually");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("service-stuck"), "{err}");
    assert!(
        accepted.len() <= 4,
        "queue of 2 plus one in the handler: {accepted:?}"
    );
    gate.add_permits(1000);
    got.wait_for(accepted.len(), WAIT).await;
    assert_eq!(got.items(), accepted);
    bus.close().await.unwrap();
}

/// Dead letters are kept for inspection even with no subscriber on the dead-letter subjects.
#[tokio::test]
async fn dead_letters_are_kept() {
    let memory = MemoryBus::new(EventBusConfig::memory()).unwrap();
    let bus: EventBus = memory.clone().into();
    bus.subscribe(
        Subscription::new("rejects", Ping::TOPIC)
            .handler(|_: Ping| async { Err::<(), _>(HandlerError::permanent("no")) }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(9)).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while memory.dead_letters().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dead = memory.dead_letters();
    assert_eq!(dead[0].subject, "dlq.cqc.events.v1.conformance_ping");
    assert_eq!(
        dead[0].headers.get(bus::headers::DLQ_GROUP),
        Some("service-rejects")
    );
    assert_eq!(Ping::decode(dead[0].payload.clone()).unwrap(), Ping::new(9));
    bus.close().await.unwrap();
}

/// A close while publishers wait for room in a full queue: every publish is handled, counted
/// as discarded at close, or fails with `Closed`; none returns Ok and then vanishes. (Before, a
/// publish blocked on the full queue returned Ok after `close()` and its event was neither
/// handled nor counted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_racing_a_close_are_all_accounted_for() {
    const N: u64 = 15;
    let mut config = small_queues(2);
    config.publish_timeout = Duration::from_secs(10);
    let memory = MemoryBus::new(config).unwrap();
    let bus: EventBus = memory.clone().into();
    let handled = Recorder::<u64>::new();
    let h = Arc::clone(&handled);
    bus.subscribe(
        Subscription::new("slow", Ping::TOPIC)
            .concurrency(1)
            .handler(move |e: Ping| {
                let h = Arc::clone(&h);
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    h.push(e.seq);
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for i in 0..N {
                results.push(bus.publish(&Ping::new(i)).await);
            }
            results
        })
    };
    handled.wait_for(3, WAIT).await;
    bus.close().await.unwrap();
    let results = publisher.await.unwrap();
    let stored = results.iter().filter(|r| r.is_ok()).count() as u64;
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, Error::Closed), "{e}");
        }
    }
    let (handled, discarded) = (handled.len() as u64, memory.discarded());
    eprintln!("close race: {stored} publishes Ok, {handled} handled, {discarded} discarded");
    assert_eq!(stored, handled + discarded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions_that_need_history_and_durables_are_refused_clearly() {
    use bus::config::StartPosition;
    let bus = EventBus::memory();
    let noop = |_: Ping| async { Ok::<_, HandlerError>(()) };
    for start in [
        StartPosition::All,
        StartPosition::Last,
        StartPosition::Sequence(5),
    ] {
        let err = bus
            .subscribe(
                Subscription::new("replay", Ping::TOPIC)
                    .start(start)
                    .handler(noop),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("start = `{start}`")) && text.contains("keeps"),
            "{text}"
        );
    }
    let err = bus
        .subscribe(
            Subscription::new("risk", Ping::TOPIC)
                .durable("risk")
                .handler(noop),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs JetStream"), "{err}");
    // The default start works, and so does naming it.
    bus.subscribe(
        Subscription::new("fresh", Ping::TOPIC)
            .start(StartPosition::New)
            .handler(noop),
    )
    .await
    .unwrap();
    bus.close().await.unwrap();
}

#[test]
fn start_positions_read_from_the_environment() {
    use bus::config::StartPosition;
    let config = EventBusConfig::from_lookup(|k| (k == "BUS_START").then(|| "all".to_owned()));
    assert_eq!(config.unwrap().consumer.start, StartPosition::All);
    let err = EventBusConfig::from_lookup(|k| (k == "BUS_START").then(|| "soon".to_owned()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("BUS_START") && err.contains("sequence:N"),
        "{err}"
    );
    let back: EventBusConfig =
        serde_json::from_str(r#"{ "consumer": { "start": "time:2024-05-01T12:00:00Z" } }"#)
            .unwrap();
    assert_eq!(back.consumer.start.to_string(), "time:2024-05-01T12:00:00Z");
}
