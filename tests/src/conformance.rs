//! The backend conformance suite: one set of behavioural tests, written against the
//! [`EventBus`] API only, that every backend must pass unchanged.
//!
//! A backend's test file provides a factory and expands the suite:
//!
//! ```text
//! async fn memory(config: bus::EventBusConfig) -> tests::conformance::TestBus {
//!     tests::conformance::TestBus::new(bus::EventBus::connect(config).await.unwrap(), ())
//! }
//! tests::conformance_suite!(memory);
//! ```
//!
//! The factory gets the test's configuration (backend-neutral settings: short backoff, few
//! deliveries) and sets what its backend needs (kind, servers), keeping anything that must live
//! as long as the bus (a server process) in the guard.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bus::middleware::Timeout;
use bus::{
    Delivery, Error, ErrorClass, Event, EventBus, EventBusConfig, HandlerError, Headers,
    RawMessage, Subscription, headers,
};
use prost::Message;

use crate::Recorder;
use crate::events::{Ping, Pong};

/// A bus under test plus whatever must outlive it (e.g. a server process).
pub struct TestBus {
    /// The bus.
    pub bus: EventBus,
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

impl TestBus {
    /// A bus with a guard dropped after it.
    pub fn new(bus: EventBus, guard: impl std::any::Any + Send + Sync) -> Self {
        TestBus {
            bus,
            _guard: Box::new(guard),
        }
    }
}

impl std::ops::Deref for TestBus {
    type Target = EventBus;
    fn deref(&self) -> &EventBus {
        &self.bus
    }
}

/// Builds a bus for one test from the test's configuration.
pub type Factory =
    dyn Fn(EventBusConfig) -> Pin<Box<dyn Future<Output = TestBus> + Send>> + Send + Sync;

/// Expands the suite into one `#[tokio::test]` per behaviour for the backend built by `$factory`
/// (an `async fn(EventBusConfig) -> TestBus`).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@each $factory;
            typed_round_trip,
            ten_thousand_events_none_lost,
            groups_fan_out_and_share,
            wildcard_filters,
            retryable_error_is_redelivered_then_succeeds,
            max_deliver_exhausted_goes_to_dead_letter,
            permanent_error_is_dead_lettered_at_once,
            undecodable_payload_is_dead_lettered_at_once,
            panic_is_dead_lettered_at_once,
            timeout_drops_the_handler_future,
            concurrency_bound_is_never_exceeded,
            ordered_mode_keeps_order,
            close_waits_for_in_flight_handlers,
            publish_and_subscribe_after_close_fail,
            invalid_topics_are_rejected,
            invalid_headers_are_rejected,
            oversize_payload_is_rejected,
            largest_event_can_be_dead_lettered,
            message_ids_with_outer_whitespace_are_refused,
            a_handler_that_never_returns_times_out,
            out_of_range_subscription_settings_are_refused,
            ordered_by_key_orders_each_key_and_runs_keys_concurrently,
            batch_handler_settles_each_event_on_its_own,
            batch_handler_panics_are_dead_lettered,
            health_reflects_close,
            trace_context_is_continued_by_handlers,
            a_new_group_starts_at_new_events_by_default,
        );
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::conformance::$name(&|config| Box::pin($factory(config))).await;
            }
        )*
    };
}

const WAIT: Duration = Duration::from_secs(30);

/// The configuration every conformance test starts from: fast redelivery, few deliveries.
pub fn base_config() -> EventBusConfig {
    let mut c = EventBusConfig::cqc();
    c.consumer_name = "conformance".into();
    c.max_deliver = 3;
    c.consumer.backoff = vec![Duration::from_millis(50)];
    c.ack_wait = Duration::from_secs(5);
    c.drain_timeout = Duration::from_secs(10);
    c
}

async fn start(factory: &Factory) -> TestBus {
    factory(base_config()).await
}

/// Subscribes a raw handler to every dead letter and returns what it records.
async fn dead_letters(bus: &EventBus) -> Arc<Recorder<RawMessage>> {
    let rec = Recorder::new();
    let r = Arc::clone(&rec);
    let filter = format!(
        "{}.>",
        bus::config::DeadLetterSettings::default().subject_prefix
    );
    bus.subscribe(Subscription::raw("dead_letters", &filter).unwrap().handler(
        move |m: RawMessage| {
            r.push(m);
            async { Ok::<_, HandlerError>(()) }
        },
    ))
    .await
    .expect("subscribe to dead letters");
    rec
}

fn header<'a>(m: &'a RawMessage, name: &str) -> &'a str {
    m.headers()
        .get(name)
        .unwrap_or_else(|| panic!("dead letter lacks header {name}: {:?}", m.headers()))
}

/// A typed event arrives equal, with its delivery metadata.
pub async fn typed_round_trip(factory: &Factory) {
    let bus = start(factory).await;
    let rec = Recorder::<(Ping, Delivery)>::new();
    let r = Arc::clone(&rec);
    bus.subscribe(Subscription::new("round_trip", Ping::TOPIC).handler(
        move |e: Ping, d: Delivery| {
            r.push((e, d));
            async { Ok::<_, HandlerError>(()) }
        },
    ))
    .await
    .unwrap();
    let sent = Ping {
        event_id: "evt-1".into(),
        seq: 7,
        note: "héllo".into(),
    };
    let ack = bus.publish(&sent).await.unwrap();
    assert!(!ack.duplicate);
    rec.wait_for(1, WAIT).await;
    let (got, d) = rec.items().remove(0);
    assert_eq!(got, sent);
    assert_eq!(d.topic(), "cqc.events.v1.conformance_ping");
    assert_eq!(d.attempt(), 1);
    assert_eq!(d.event_id(), Some("evt-1"));
    assert_eq!(d.event_type(), Some("cqc.events.v1.ConformancePing"));
    assert_eq!(d.group(), "conformance-round_trip");
    assert_eq!(d.stream_sequence(), ack.sequence);
    bus.close().await.unwrap();
}

/// 10 000 events published in a batch all arrive; none is lost.
pub async fn ten_thousand_events_none_lost(factory: &Factory) {
    const N: u64 = 10_000;
    let bus = start(factory).await;
    let rec = Recorder::<u64>::new();
    let r = Arc::clone(&rec);
    bus.subscribe(
        Subscription::new("count", Ping::TOPIC)
            .concurrency(32)
            .handler(move |e: Ping| {
                r.push(e.seq);
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .unwrap();
    let events: Vec<Ping> = (0..N).map(Ping::new).collect();
    let acks = bus.publish_batch(&events).await.unwrap();
    assert_eq!(acks.len(), N as usize);
    rec.wait_until(WAIT, "10 000 distinct events", |seqs| {
        seqs.iter().collect::<BTreeSet<_>>().len() == N as usize
    })
    .await;
    let distinct: BTreeSet<u64> = rec.items().into_iter().collect();
    assert_eq!(distinct, (0..N).collect());
    bus.close().await.unwrap();
}

/// Every group gets every event; the members of one group share them, each event to one.
pub async fn groups_fan_out_and_share(factory: &Factory) {
    const N: u64 = 200;
    let bus = start(factory).await;
    let shared = Recorder::<(usize, u64)>::new();
    for member in 0..2 {
        let r = Arc::clone(&shared);
        bus.subscribe(
            Subscription::new("worker", Ping::TOPIC)
                .group("workers")
                .concurrency(1)
                .handler(move |e: Ping| {
                    r.push((member, e.seq));
                    async {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Ok::<_, HandlerError>(())
                    }
                }),
        )
        .await
        .unwrap();
    }
    let audit = Recorder::<u64>::new();
    let r = Arc::clone(&audit);
    bus.subscribe(
        Subscription::new("audit", Ping::TOPIC).handler(move |e: Ping| {
            r.push(e.seq);
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .await
    .unwrap();
    for seq in 0..N {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    audit.wait_for(N as usize, WAIT).await;
    shared.wait_for(N as usize, WAIT).await;
    // Let any stray duplicate show up before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let audit: Vec<u64> = audit.items();
    assert_eq!(audit.iter().collect::<BTreeSet<_>>().len(), N as usize);
    let shared = shared.items();
    assert_eq!(
        shared.len(),
        N as usize,
        "each event to exactly one member of the group"
    );
    let per_member: BTreeMap<usize, usize> =
        shared.iter().fold(BTreeMap::new(), |mut m, (w, _)| {
            *m.entry(*w).or_default() += 1;
            m
        });
    assert_eq!(
        per_member.len(),
        2,
        "both members took a share: {per_member:?}"
    );
    let seqs: BTreeSet<u64> = shared.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (0..N).collect());
    bus.close().await.unwrap();
}

/// `*` matches one token, `>` one or more.
pub async fn wildcard_filters(factory: &Factory) {
    let bus = start(factory).await;
    let mut recs = Vec::new();
    for (name, filter) in [
        ("star", "cqc.events.v1.*"),
        ("tail", "cqc.events.v1.>"),
        ("orders", "cqc.events.v1.orders.*"),
    ] {
        let rec = Recorder::<String>::new();
        let r = Arc::clone(&rec);
        bus.subscribe(
            Subscription::raw(name, filter)
                .unwrap()
                .handler(move |m: RawMessage| {
                    r.push(m.topic().to_owned());
                    async { Ok::<_, HandlerError>(()) }
                }),
        )
        .await
        .unwrap();
        recs.push(rec);
    }
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.publish(&Pong { seq: 2 }).await.unwrap();
    bus.publish_raw("cqc.events.v1.orders.eu", &b"x"[..], Headers::new())
        .await
        .unwrap();
    recs[1].wait_for(3, WAIT).await;
    recs[0].wait_for(2, WAIT).await;
    recs[2].wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sorted = |r: &Recorder<String>| r.items().into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        sorted(&recs[0]),
        BTreeSet::from([
            "cqc.events.v1.conformance_ping".to_owned(),
            "cqc.events.v1.conformance_pong".to_owned()
        ])
    );
    assert_eq!(recs[0].len(), 2);
    assert_eq!(recs[1].len(), 3);
    assert_eq!(recs[2].items(), ["cqc.events.v1.orders.eu"]);
    bus.close().await.unwrap();
}

/// A retryable error is redelivered (attempt grows) until the handler succeeds.
pub async fn retryable_error_is_redelivered_then_succeeds(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let attempts = Recorder::<u32>::new();
    let r = Arc::clone(&attempts);
    bus.subscribe(
        Subscription::new("flaky", Ping::TOPIC).handler(move |_: Ping, d: Delivery| {
            r.push(d.attempt());
            async move {
                if d.attempt() < 3 {
                    Err(HandlerError::retryable("not yet"))
                } else {
                    Ok(())
                }
            }
        }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    attempts.wait_for(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts.items(), [1, 2, 3]);
    assert!(dlq.is_empty(), "nothing dead-lettered: {:?}", dlq.items());
    bus.close().await.unwrap();
}

/// After `max_deliver` retryable failures the original bytes go to the dead-letter subject with
/// headers naming where they came from and why.
pub async fn max_deliver_exhausted_goes_to_dead_letter(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let attempts = Recorder::<u32>::new();
    let r = Arc::clone(&attempts);
    bus.subscribe(Subscription::new("always_fails", Ping::TOPIC).handler(
        move |_: Ping, d: Delivery| {
            r.push(d.attempt());
            async { Err::<(), _>(HandlerError::retryable("database unavailable")) }
        },
    ))
    .await
    .unwrap();
    let event = Ping::new(42);
    let ack = bus.publish(&event).await.unwrap();
    dlq.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(attempts.items(), [1, 2, 3], "max_deliver = 3 deliveries");
    let dead = dlq.items();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.topic(), "dlq.cqc.events.v1.conformance_ping");
    assert_eq!(
        d.payload,
        event.encode_to_vec(),
        "original bytes, unchanged"
    );
    assert_eq!(
        header(d, headers::DLQ_TOPIC),
        "cqc.events.v1.conformance_ping"
    );
    assert_eq!(header(d, headers::DLQ_STREAM_SEQ), ack.sequence.to_string());
    assert_eq!(header(d, headers::DLQ_DELIVERIES), "3");
    assert_eq!(header(d, headers::DLQ_GROUP), "conformance-always_fails");
    assert_eq!(header(d, headers::DLQ_ERROR_CLASS), "retryable");
    assert!(header(d, headers::DLQ_ERROR).contains("database unavailable"));
    assert_eq!(header(d, headers::EVENT_TYPE), Ping::FULL_NAME);
    bus.close().await.unwrap();
}

async fn dead_lettered_once(
    factory: &Factory,
    name: &str,
    handler: impl Fn(Ping) -> Result<(), HandlerError> + Send + Sync + 'static,
    class: ErrorClass,
    message: &str,
) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    bus.subscribe(
        Subscription::new(name, Ping::TOPIC).handler(move |e: Ping| {
            c.fetch_add(1, Ordering::SeqCst);
            let outcome = handler(e);
            async move { outcome }
        }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    dlq.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no redelivery");
    let d = &dlq.items()[0];
    assert_eq!(header(d, headers::DLQ_ERROR_CLASS), class.as_str());
    assert_eq!(header(d, headers::DLQ_DELIVERIES), "1");
    assert!(
        header(d, headers::DLQ_ERROR).contains(message),
        "{:?}",
        d.headers()
    );
    assert_eq!(dlq.len(), 1);
    bus.close().await.unwrap();
}

/// A permanent error is dead-lettered on the first delivery.
pub async fn permanent_error_is_dead_lettered_at_once(factory: &Factory) {
    dead_lettered_once(
        factory,
        "rejects",
        |_| Err(HandlerError::permanent("unknown portfolio")),
        ErrorClass::Permanent,
        "unknown portfolio",
    )
    .await;
}

/// A panic is dead-lettered on the first delivery, with its message.
pub async fn panic_is_dead_lettered_at_once(factory: &Factory) {
    dead_lettered_once(
        factory,
        "panics",
        |e| panic!("bad invariant for seq {}", e.seq),
        ErrorClass::Panic,
        "bad invariant for seq 1",
    )
    .await;
}

/// Bytes that are not the handler's event type never reach the handler and are dead-lettered.
pub async fn undecodable_payload_is_dead_lettered_at_once(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    bus.subscribe(
        Subscription::new("typed", Ping::TOPIC).handler(move |_: Ping| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .await
    .unwrap();
    let garbage = vec![0xff, 0xff, 0xff, 0xff];
    bus.publish_raw(Ping::TOPIC.as_str(), garbage.clone(), Headers::new())
        .await
        .unwrap();
    dlq.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let d = &dlq.items()[0];
    assert_eq!(d.payload, garbage);
    assert_eq!(header(d, headers::DLQ_ERROR_CLASS), "decode");
    assert!(header(d, headers::DLQ_ERROR).contains(Ping::FULL_NAME));
    bus.close().await.unwrap();
}

struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// When the timeout fires the handler future is dropped (its locals are destroyed) and the
/// failure counts as retryable.
pub async fn timeout_drops_the_handler_future(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let (d, f) = (Arc::clone(&dropped), Arc::clone(&finished));
    bus.subscribe(
        Subscription::new("slow", Ping::TOPIC)
            .max_deliver(1)
            .layer(Timeout::new(Duration::from_millis(100)))
            .handler(move |_: Ping| {
                let guard = DropFlag(Arc::clone(&d));
                let finished = Arc::clone(&f);
                async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    finished.store(true, Ordering::SeqCst);
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    dlq.wait_for(1, WAIT).await;
    assert!(dropped.load(Ordering::SeqCst), "handler future dropped");
    assert!(
        !finished.load(Ordering::SeqCst),
        "handler did not run to the end"
    );
    assert_eq!(header(&dlq.items()[0], headers::DLQ_ERROR_CLASS), "timeout");
    bus.close().await.unwrap();
}

/// No more handlers run at once than the subscription's concurrency.
pub async fn concurrency_bound_is_never_exceeded(factory: &Factory) {
    const LIMIT: usize = 4;
    let bus = start(factory).await;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Recorder::<u64>::new();
    let (i, p, r) = (Arc::clone(&in_flight), Arc::clone(&peak), Arc::clone(&done));
    bus.subscribe(
        Subscription::new("bounded", Ping::TOPIC)
            .concurrency(LIMIT)
            .handler(move |e: Ping| {
                let (i, p, r) = (Arc::clone(&i), Arc::clone(&p), Arc::clone(&r));
                async move {
                    let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    i.fetch_sub(1, Ordering::SeqCst);
                    r.push(e.seq);
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    let events: Vec<Ping> = (0..100).map(Ping::new).collect();
    bus.publish_batch(&events).await.unwrap();
    done.wait_for(100, WAIT).await;
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= LIMIT, "peak {peak} over the bound {LIMIT}");
    assert!(peak > 1, "handlers did run concurrently (peak {peak})");
    bus.close().await.unwrap();
}

/// Ordered mode delivers one at a time, in publish order.
pub async fn ordered_mode_keeps_order(factory: &Factory) {
    const N: u64 = 200;
    let bus = start(factory).await;
    let rec = Recorder::<u64>::new();
    let r = Arc::clone(&rec);
    bus.subscribe(
        Subscription::new("ordered", Ping::TOPIC)
            .ordered()
            .handler(move |e: Ping| {
                let r = Arc::clone(&r);
                async move {
                    // Vary the handling time so any reordering would show.
                    if e.seq.is_multiple_of(7) {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                    r.push(e.seq);
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    for seq in 0..N {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    rec.wait_for(N as usize, WAIT).await;
    assert_eq!(rec.items(), (0..N).collect::<Vec<_>>());
    bus.close().await.unwrap();
}

/// `close()` returns only after the handler that was running has finished.
pub async fn close_waits_for_in_flight_handlers(factory: &Factory) {
    let bus = start(factory).await;
    let started = Recorder::<u64>::new();
    let finished = Arc::new(AtomicBool::new(false));
    let (s, f) = (Arc::clone(&started), Arc::clone(&finished));
    bus.subscribe(
        Subscription::new("lingering", Ping::TOPIC).handler(move |e: Ping| {
            let (s, f) = (Arc::clone(&s), Arc::clone(&f));
            async move {
                s.push(e.seq);
                tokio::time::sleep(Duration::from_millis(500)).await;
                f.store(true, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    started.wait_for(1, WAIT).await;
    assert!(!finished.load(Ordering::SeqCst));
    bus.close().await.unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "close returned before the handler finished"
    );
}

/// After `close()`, publish and subscribe say the bus is closed.
pub async fn publish_and_subscribe_after_close_fail(factory: &Factory) {
    let bus = start(factory).await;
    bus.close().await.unwrap();
    let err = bus.publish(&Ping::new(1)).await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
    assert!(err.to_string().contains("closed"));
    let err = bus
        .subscribe(
            Subscription::new("late", Ping::TOPIC)
                .handler(|_: Ping| async { Ok::<_, HandlerError>(()) }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
    bus.close().await.expect("closing twice is harmless");
}

/// Invalid topics and filters, and topics no stream captures, are errors that say why.
pub async fn invalid_topics_are_rejected(factory: &Factory) {
    let bus = start(factory).await;
    for bad in [
        "cqc..events",
        "cqc.events.*",
        "cqc.events.>",
        "cqc events",
        "",
    ] {
        let err = bus
            .publish_raw(bad, &b"x"[..], Headers::new())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTopic { .. }), "{bad:?}: {err}");
    }
    let err = Subscription::raw("bad", "cqc.>.events").unwrap_err();
    assert!(err.to_string().contains("last token"), "{err}");
    // Longer than a NATS protocol line can carry with its dead-letter prefix.
    let long = format!("cqc.events.v1.{}", "x".repeat(1100));
    let err = bus
        .publish_raw(&long, &b"x"[..], Headers::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1024 bytes"), "{err}");
    let err = Subscription::raw("long", &long).unwrap_err();
    assert!(err.to_string().contains("1024 bytes"), "{err}");
    let err = bus
        .publish_raw("elsewhere.orders", &b"x"[..], Headers::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoStream { .. }), "{err}");
    assert!(err.to_string().contains("elsewhere.orders"));
    let err = bus
        .subscribe(
            Subscription::raw("outside", "elsewhere.>")
                .unwrap()
                .handler(|_: RawMessage| async { Ok::<_, HandlerError>(()) }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoStream { .. }), "{err}");
    bus.close().await.unwrap();
}

/// Headers NATS cannot carry (a bad name, a line break in a value, an event id with a line
/// break) are refused before anything is sent, saying which header; nothing arrives for them,
/// and the bus goes on.
pub async fn invalid_headers_are_rejected(factory: &Factory) {
    let bus = start(factory).await;
    let rec = Recorder::<Ping>::new();
    let r = Arc::clone(&rec);
    bus.subscribe(
        Subscription::new("headers", Ping::TOPIC).handler(move |e: Ping| {
            r.push(e);
            async { Ok::<_, HandlerError>(()) }
        }),
    )
    .await
    .unwrap();
    let payload = Ping::new(0).encode_to_vec();
    for (name, value) in [
        ("bad name", "x"),
        ("bad:name", "x"),
        ("", "x"),
        ("tenant", "a\r\nNats-Msg-Id: forged"),
    ] {
        let mut h = Headers::new();
        h.insert(name, value);
        let err = bus
            .publish_raw(Ping::TOPIC.as_str(), payload.clone(), h)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidHeader { .. }),
            "{name:?}: {value:?}: {err}"
        );
        assert!(!err.is_retryable());
    }
    let mut bad_id = Ping::new(1);
    bad_id.event_id = "evt-1\n".into();
    let err = bus.publish(&bad_id).await.unwrap_err();
    assert!(err.to_string().contains("Nats-Msg-Id"), "{err}");
    let err = bus
        .publish_batch(&[Ping::new(2), bad_id, Ping::new(3)])
        .await
        .unwrap_err();
    match &err {
        Error::PartialBatch {
            acks,
            failed,
            source,
        } => {
            assert_eq!(*failed, 1, "{err}");
            assert!(matches!(**source, Error::InvalidHeader { .. }), "{err}");
            assert!(acks[0].is_some() && acks[1].is_none(), "{acks:?}");
            assert_eq!(acks.len(), 2, "the batch stops at its bad event");
        }
        other => panic!("expected PartialBatch, got {other}"),
    }

    bus.publish(&Ping::new(4)).await.unwrap();
    rec.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seqs: Vec<u64> = rec.items().iter().map(|p| p.seq).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        [2, 4],
        "only the valid events arrive, the batch up to its bad event"
    );
    bus.close().await.unwrap();
}

/// A payload over the maximum is refused before it is sent, saying so.
pub async fn oversize_payload_is_rejected(factory: &Factory) {
    let bus = start(factory).await;
    let big = vec![0u8; 2 * 1024 * 1024];
    let err = bus
        .publish_raw("cqc.events.v1.big", big, Headers::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    assert!(!err.is_retryable());
    // The bus still works afterwards.
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.close().await.unwrap();
}

/// The largest event the bus takes (the server's `max_payload` less the dead-letter headroom,
/// headers counted) is stored, and when its handler fails for good its dead letter, the same
/// bytes with more headers, is stored too; one byte more is refused up front, saying the limit.
pub async fn largest_event_can_be_dead_lettered(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    bus.subscribe(
        Subscription::raw("refuses", "cqc.events.v1.big")
            .unwrap()
            .handler(|_: RawMessage| async { Err::<(), _>(HandlerError::permanent("no")) }),
    )
    .await
    .unwrap();
    let mut h = Headers::new();
    h.insert(headers::MSG_ID, "big-1"); // 32 bytes of headers on the wire
    let limit = bus::memory::MAX_PAYLOAD - bus::headers::DEAD_LETTER_HEADROOM;
    let payload = vec![7u8; limit - 32];
    let err = bus
        .publish_raw(
            "cqc.events.v1.big",
            [&payload[..], &[7]].concat(),
            h.clone(),
        )
        .await
        .unwrap_err();
    match &err {
        Error::PayloadTooLarge { size, max, .. } => assert_eq!((*size, *max), (limit + 1, limit)),
        other => panic!("expected PayloadTooLarge, got {other}"),
    }
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    bus.publish_raw("cqc.events.v1.big", payload.clone(), h)
        .await
        .unwrap();
    dlq.wait_for(1, WAIT).await;
    let letter = &dlq.items()[0];
    assert_eq!(letter.payload.len(), payload.len());
    assert_eq!(header(letter, headers::DLQ_ERROR_CLASS), "permanent");
    bus.close().await.unwrap();
}

/// A message id with whitespace around it is refused: the server trims header values, so it
/// would be taken for a repeat of the trimmed id and silently dropped.
pub async fn message_ids_with_outer_whitespace_are_refused(factory: &Factory) {
    let bus = start(factory).await;
    for id in [" order-1", "order-1 ", "\torder-1"] {
        let mut e = Ping::new(1);
        e.event_id = id.into();
        let err = bus.publish(&e).await.unwrap_err();
        assert!(matches!(err, Error::InvalidHeader { .. }), "{id:?}: {err}");
        assert!(err.to_string().contains("whitespace"), "{err}");
        let mut h = Headers::new();
        h.insert(headers::MSG_ID, id.to_owned());
        let err = bus
            .publish_raw(Ping::TOPIC.as_str(), &b""[..], h)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidHeader { .. }), "{id:?}: {err}");
    }
    bus.close().await.unwrap();
}

/// A handler that never returns is cancelled at the handler timeout, and its event is
/// delivered again (here: dead-lettered after its last delivery), instead of holding its slot
/// forever.
pub async fn a_handler_that_never_returns_times_out(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let attempts = Recorder::<u32>::new();
    let a = Arc::clone(&attempts);
    bus.subscribe(
        Subscription::new("stuck", Ping::TOPIC)
            .max_deliver(2)
            .handler_timeout(Duration::from_millis(200))
            .handler(move |_: Ping, d: Delivery| {
                a.push(d.attempt());
                std::future::pending::<Result<(), HandlerError>>()
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    dlq.wait_for(1, WAIT).await;
    assert_eq!(attempts.items(), [1, 2]);
    let letter = &dlq.items()[0];
    assert_eq!(header(letter, headers::DLQ_ERROR_CLASS), "timeout");
    assert!(header(letter, headers::DLQ_ERROR).contains("handler_timeout"));
    bus.close().await.unwrap();
}

/// Settings a subscription overrides are checked like the configuration's: a backoff of
/// years or a concurrency of 0 is refused at subscribe, naming the handler.
pub async fn out_of_range_subscription_settings_are_refused(factory: &Factory) {
    let bus = start(factory).await;
    let noop = |_: Ping| async { Ok::<_, HandlerError>(()) };
    let days = |n: u64| Duration::from_secs(n * 24 * 3600);
    for sub in [
        Subscription::new("h1", Ping::TOPIC)
            .backoff([days(800)])
            .handler(noop),
        Subscription::new("h2", Ping::TOPIC)
            .backoff([Duration::ZERO])
            .handler(noop),
        Subscription::new("h3", Ping::TOPIC)
            .handler_timeout(days(2))
            .handler(noop),
    ] {
        let name = sub.name().to_owned();
        let err = bus.subscribe(sub).await.unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        assert!(err.to_string().contains(&name), "{err}");
    }
    assert!(bus.check().await.is_healthy());
    bus.close().await.unwrap();
}

/// Ordered by key: events of one key are handled one at a time in stream order, through a
/// redelivery (a failed event holds back the later ones of its key), while different keys run
/// at the same time.
pub async fn ordered_by_key_orders_each_key_and_runs_keys_concurrently(factory: &Factory) {
    const KEYS: u64 = 4;
    const PER_KEY: u64 = 20;
    let bus = start(factory).await;
    let done = Recorder::<(String, u64)>::new();
    let busy: Arc<std::sync::Mutex<BTreeMap<String, usize>>> = Arc::default();
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failed_once: Arc<std::sync::Mutex<BTreeSet<u64>>> = Arc::default();
    let (d, b, i, p, f) = (
        Arc::clone(&done),
        Arc::clone(&busy),
        Arc::clone(&in_flight),
        Arc::clone(&peak),
        Arc::clone(&failed_once),
    );
    bus.subscribe(
        Subscription::new("by_key", Ping::TOPIC)
            .ordered_by(|e: &Ping| e.note.clone())
            .concurrency(8)
            .handler(move |e: Ping| {
                let (d, b, i, p, f) = (
                    Arc::clone(&d),
                    Arc::clone(&b),
                    Arc::clone(&i),
                    Arc::clone(&p),
                    Arc::clone(&f),
                );
                async move {
                    {
                        let mut busy = b.lock().unwrap();
                        let n = busy.entry(e.note.clone()).or_default();
                        *n += 1;
                        assert_eq!(*n, 1, "two events of key {} at once", e.note);
                    }
                    let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    i.fetch_sub(1, Ordering::SeqCst);
                    *b.lock().unwrap().get_mut(&e.note).unwrap() -= 1;
                    // The third event of each key fails once.
                    if e.seq % PER_KEY == 2 && f.lock().unwrap().insert(e.seq) {
                        return Err(HandlerError::retryable("first try fails"));
                    }
                    d.push((e.note.clone(), e.seq));
                    Ok(())
                }
            }),
    )
    .await
    .unwrap();
    // Interleaved: key of event n is n % KEYS, so each key's events are spread out.
    let events: Vec<Ping> = (0..KEYS * PER_KEY)
        .map(|n| {
            let (key, i) = (n % KEYS, n / KEYS);
            let mut e = Ping::new(key * PER_KEY + i);
            e.note = format!("key-{key}");
            e
        })
        .collect();
    bus.publish_batch(&events).await.unwrap();
    done.wait_for((KEYS * PER_KEY) as usize, WAIT).await;
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, seq) in done.items() {
        per_key.entry(key).or_default().push(seq);
    }
    for (key, seqs) in &per_key {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {seqs:?}"
        );
        assert_eq!(seqs.len(), PER_KEY as usize, "{key}: {seqs:?}");
    }
    assert!(peak.load(Ordering::SeqCst) > 1, "keys ran one at a time");
    assert_eq!(failed_once.lock().unwrap().len(), KEYS as usize);
    bus.close().await.unwrap();
}

/// A batch handler gets batches of up to `max_events` (a partial one after `max_wait`), and
/// each event is settled on its own: one acknowledged, one redelivered, one dead-lettered; an
/// event that does not decode is dead-lettered without reaching the handler.
pub async fn batch_handler_settles_each_event_on_its_own(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let sizes = Recorder::<usize>::new();
    let handled = Recorder::<u64>::new();
    let failed_once = Arc::new(AtomicBool::new(false));
    let (z, h, f) = (
        Arc::clone(&sizes),
        Arc::clone(&handled),
        Arc::clone(&failed_once),
    );
    bus.subscribe(Subscription::new("batches", Ping::TOPIC).batch_handler(
        bus::BatchOptions::new(10, Duration::from_millis(100)),
        move |events: Vec<Ping>| {
            z.push(events.len());
            let outcomes: Vec<Result<(), HandlerError>> = events
                .iter()
                .map(|e| match e.seq {
                    7 => Err(HandlerError::permanent("seven is refused")),
                    11 if !f.swap(true, Ordering::SeqCst) => {
                        Err(HandlerError::retryable("the first try fails"))
                    }
                    _ => Ok(()),
                })
                .collect();
            for e in &events {
                h.push(e.seq);
            }
            async move { outcomes }
        },
    ))
    .await
    .unwrap();
    let events: Vec<Ping> = (0..25).map(Ping::new).collect();
    bus.publish_batch(&events).await.unwrap();
    bus.publish_raw(Ping::TOPIC.as_str(), &b"\xff\xff"[..], Headers::new())
        .await
        .unwrap();
    // Every event reaches the handler, 11 twice (its first try fails).
    handled
        .wait_until(WAIT, "every event handled", |items| {
            items.iter().filter(|s| **s == 11).count() >= 2 && items.len() >= 26
        })
        .await;
    dlq.wait_for(2, WAIT).await;
    let mut classes: Vec<String> = dlq
        .items()
        .iter()
        .map(|m| header(m, headers::DLQ_ERROR_CLASS).to_owned())
        .collect();
    classes.sort();
    assert_eq!(classes, ["decode", "permanent"]);
    let sizes = sizes.items();
    assert!(sizes.iter().all(|n| (1..=10).contains(n)), "{sizes:?}");
    assert!(
        sizes.iter().any(|n| *n > 1),
        "events were batched: {sizes:?}"
    );
    let distinct: BTreeSet<u64> = handled.items().into_iter().collect();
    assert_eq!(distinct.len(), 25);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dlq.len(), 2, "11 succeeded on its second try");

    // Middleware does not apply to a batch handler: saying so beats ignoring it.
    let err = bus
        .subscribe(
            Subscription::new("layered", Ping::TOPIC)
                .layer(Timeout::new(Duration::from_secs(1)))
                .batch_handler(
                    bus::BatchOptions::new(10, Duration::from_millis(10)),
                    |_: Vec<Ping>| async { Ok::<_, HandlerError>(()) },
                ),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("batch handler"), "{err}");
    bus.close().await.unwrap();
}

/// A batch handler that panics, before its first `.await` or after, dead-letters the events of
/// that run with class `panic`, and the subscription goes on with the next batch.
pub async fn batch_handler_panics_are_dead_lettered(factory: &Factory) {
    let bus = start(factory).await;
    let dlq = dead_letters(&bus).await;
    let handled = Recorder::<u64>::new();
    let h = Arc::clone(&handled);
    bus.subscribe(Subscription::new("panicky", Ping::TOPIC).batch_handler(
        bus::BatchOptions::new(1, Duration::from_millis(10)),
        move |events: Vec<Ping>| {
            let seq = events[0].seq;
            assert_ne!(seq, 1, "bad invariant before the await");
            let h = Arc::clone(&h);
            async move {
                tokio::task::yield_now().await;
                assert_ne!(seq, 2, "bad invariant after the await");
                h.push(seq);
                Ok::<_, HandlerError>(())
            }
        },
    ))
    .await
    .unwrap();
    for seq in 1..=3 {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    dlq.wait_for(2, WAIT).await;
    handled.wait_for(1, WAIT).await;
    assert_eq!(handled.items(), [3]);
    let mut errors: Vec<String> = dlq
        .items()
        .iter()
        .map(|m| {
            assert_eq!(header(m, headers::DLQ_ERROR_CLASS), "panic");
            header(m, headers::DLQ_ERROR).to_owned()
        })
        .collect();
    errors.sort();
    assert!(errors[0].contains("after the await"), "{errors:?}");
    assert!(errors[1].contains("before the await"), "{errors:?}");
    bus.close().await.unwrap();
}

/// `check()` is healthy while open and unhealthy once closed.
pub async fn health_reflects_close(factory: &Factory) {
    let bus = start(factory).await;
    assert!(bus.check().await.is_healthy());
    bus.close().await.unwrap();
    assert!(!bus.check().await.is_healthy());
}

/// With `trace_context` on, an event published by a handler carries the trace id of the event
/// it handles, under a new parent id; an event published outside a handler starts a trace.
pub async fn trace_context_is_continued_by_handlers(factory: &Factory) {
    let mut config = base_config();
    config.trace_context = true;
    let bus = factory(config).await;
    let relay = bus.bus.clone();
    bus.subscribe(
        Subscription::new("relay", Ping::TOPIC).handler(move |e: Ping| {
            let bus = relay.clone();
            async move {
                bus.publish(&Pong { seq: e.seq }).await?;
                Ok::<_, HandlerError>(())
            }
        }),
    )
    .await
    .unwrap();
    let seen = Recorder::<(String, String)>::new();
    for (name, filter) in [
        ("pings", "cqc.events.v1.conformance_ping"),
        ("pongs", "cqc.events.v1.conformance_pong"),
    ] {
        let r = Arc::clone(&seen);
        bus.subscribe(
            Subscription::raw(name, filter)
                .unwrap()
                .handler(move |m: RawMessage| {
                    let parent = m
                        .headers()
                        .get(headers::TRACEPARENT)
                        .unwrap_or_default()
                        .to_owned();
                    r.push((m.topic().to_owned(), parent));
                    async { Ok::<_, HandlerError>(()) }
                }),
        )
        .await
        .unwrap();
    }
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.publish(&Ping::new(2)).await.unwrap();
    seen.wait_for(4, WAIT).await;
    let fields = |tp: &str| -> (String, String) {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "not a traceparent: {tp:?}");
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len()),
            ("00", 32, 16),
            "{tp}"
        );
        (parts[1].to_owned(), parts[2].to_owned())
    };
    let items = seen.items();
    let of = |topic: &str| -> Vec<(String, String)> {
        items
            .iter()
            .filter(|(t, _)| t.ends_with(topic))
            .map(|(_, tp)| fields(tp))
            .collect()
    };
    let (pings, pongs) = (of("conformance_ping"), of("conformance_pong"));
    assert_eq!((pings.len(), pongs.len()), (2, 2));
    assert_ne!(
        pings[0].0, pings[1].0,
        "separate publishes start separate traces"
    );
    for (trace, parent) in &pongs {
        let ping = pings
            .iter()
            .find(|(t, _)| t == trace)
            .expect("each pong continues a ping's trace");
        assert_ne!(&ping.1, parent, "with a new parent id");
    }
    bus.close().await.unwrap();
}

/// A group created after events were published starts with the next event (the default start
/// position, `new`), on every backend; an earlier group got them all.
pub async fn a_new_group_starts_at_new_events_by_default(factory: &Factory) {
    let bus = start(factory).await;
    let subscribe = |name: &'static str| {
        let rec = Recorder::<u64>::new();
        let r = Arc::clone(&rec);
        let sub = Subscription::new(name, Ping::TOPIC).handler(move |e: Ping| {
            r.push(e.seq);
            async { Ok::<_, HandlerError>(()) }
        });
        (rec, sub)
    };
    let (early, sub) = subscribe("early");
    bus.subscribe(sub).await.unwrap();
    for seq in 0..3 {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    early.wait_for(3, WAIT).await;
    let (late, sub) = subscribe("late");
    bus.subscribe(sub).await.unwrap();
    bus.publish(&Ping::new(3)).await.unwrap();
    early.wait_for(4, WAIT).await;
    late.wait_for(1, WAIT).await;
    assert_eq!(late.items(), [3], "the late group starts at new events");
    bus.close().await.unwrap();
}
