//! `bus::testing::TestBus`: what users' handler tests rely on. Every test runs with paused time,
//! as users are told to: redelivery backoff then costs no real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bus::testing::{Outcome, TestBus};
use bus::{
    BackendKind, Error, ErrorClass, Event, EventBus, EventBusConfig, HandlerError, Subscription,
};
use tests::events::{Ping, Pong};

/// Answers each `Ping` with a `Pong` of the same sequence number.
fn pong_on_ping(bus: EventBus) -> Subscription {
    Subscription::new("pong", Ping::TOPIC).handler(move |ping: Ping| {
        let bus = bus.clone();
        async move {
            bus.publish(&Pong { seq: ping.seq }).await?;
            Ok::<_, HandlerError>(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn waits_for_what_handlers_publish() {
    let bus = TestBus::new();
    bus.subscribe(pong_on_ping(bus.bus().clone()))
        .await
        .unwrap();
    for seq in 1..=3 {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    let pongs = bus.wait_for::<Pong>(3).await;
    let mut seqs: Vec<u64> = pongs.iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3]);
    bus.wait_idle().await;
    let pings = bus.events::<Ping>();
    assert_eq!(pings.len(), 3, "the test's own publishes are recorded too");
    let handled = bus.handled();
    assert_eq!(handled.len(), 3, "{handled:?}");
    assert!(
        handled
            .iter()
            .all(|h| h.is::<Ping>() && h.outcome == Outcome::Acked)
    );
    bus.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff_in_paused_time() {
    let mut config = EventBusConfig::memory();
    config.consumer.backoff = vec![Duration::from_secs(1), Duration::from_secs(5)];
    let bus = TestBus::with_config(config).unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let count = Arc::clone(&calls);
    bus.subscribe(
        Subscription::new("flaky", Ping::TOPIC).handler(move |_: Ping| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n < 3 {
                    return Err(HandlerError::retryable(format!("down ({n})")));
                }
                Ok(())
            }
        }),
    )
    .await
    .unwrap();
    let start = tokio::time::Instant::now();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.wait_idle().await;

    let outcomes: Vec<(u32, Outcome)> = bus
        .handled()
        .into_iter()
        .map(|h| (h.attempt, h.outcome))
        .collect();
    let retry = |delay, n| Outcome::Redelivered {
        delay: Duration::from_secs(delay),
        class: ErrorClass::Retryable,
        error: format!("down ({n})"),
    };
    assert_eq!(
        outcomes,
        [(1, retry(1, 1)), (2, retry(5, 2)), (3, Outcome::Acked)]
    );
    // The test's clock went through both delays (in no real time: it is paused).
    assert!(
        start.elapsed() >= Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    bus.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dead_letters_are_awaited_by_class() {
    let mut config = EventBusConfig::memory();
    config.max_deliver = 2;
    let bus = TestBus::with_config(config).unwrap();
    bus.subscribe(
        Subscription::new("picky", Ping::TOPIC).handler(|ping: Ping| async move {
            match ping.seq {
                1 => Err(HandlerError::permanent("never valid")),
                _ => Err(HandlerError::retryable("always down")),
            }
        }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.publish(&Ping::new(2)).await.unwrap();

    let permanent = bus.wait_dead_lettered::<Ping>(ErrorClass::Permanent).await;
    assert_eq!(permanent.seq, 1);
    let retryable = bus.wait_dead_lettered::<Ping>(ErrorClass::Retryable).await;
    assert_eq!(retryable.seq, 2);
    bus.wait_idle().await;
    let dead: Vec<_> = bus
        .published()
        .into_iter()
        .filter(|p| p.is_dead_letter())
        .collect();
    assert_eq!(dead.len(), 2, "each dead letter is published: {dead:?}");
    assert!(dead.iter().all(|p| p.topic.starts_with("dlq.")));
    assert!(
        bus.events::<Ping>().len() == 2,
        "dead letters are not counted as events"
    );
    bus.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "waiting for 1 `cqc.events.v1.ConformancePong` events; 1 published")]
async fn a_wait_that_times_out_says_what_was_seen() {
    let bus = TestBus::new();
    bus.publish(&Ping::new(7)).await.unwrap();
    bus.wait_for::<Pong>(1).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "a `cqc.events.v1.ConformancePing` dead-lettered as panic")]
async fn a_missing_dead_letter_fails_the_wait() {
    let bus = TestBus::new();
    bus.subscribe(
        Subscription::new("fine", Ping::TOPIC)
            .handler(|_: Ping| async { Ok::<_, HandlerError>(()) }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.wait_dead_lettered::<Ping>(ErrorClass::Panic).await;
}

#[test]
fn a_jetstream_configuration_is_refused_with_what_to_do() {
    let mut config = EventBusConfig::memory();
    config.backend = BackendKind::JetStream;
    match TestBus::with_config(config) {
        Err(Error::Config(why)) => assert!(why.contains("backend = memory"), "{why}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
