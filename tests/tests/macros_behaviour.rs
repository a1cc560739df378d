//! `#[event_handler]` on the memory bus: every attribute takes effect at run time, state is
//! bound per subscription, and the generated value is what `subscribe` takes.

// The runtime under another name, for `crate = "..."`.
extern crate bus as renamed_bus;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::headers::{DLQ_DELIVERIES, DLQ_ERROR, DLQ_ERROR_CLASS};
use bus::middleware::{HANDLER_DURATION, HANDLER_TOTAL};
use bus::{
    Delivery, ErrorClass, Event, EventBus, EventBusConfig, HandlerError, IntoSubscription,
    MemoryBus, State, Topic, event_handler,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

// ---------------------------------------------------------------------------------------------
// Test events (hand-written `bus::Event`s; topics under the memory bus's `cqc.events.v1.>`).

#[derive(Clone, PartialEq, prost::Message)]
struct Tick {
    #[prost(uint64, tag = "1")]
    n: u64,
}

impl Event for Tick {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.macro_tick");
    const EVENT_TYPE: &'static str = "macro_tick";
    const FULL_NAME: &'static str = "cqc.events.v1.MacroTick";
}

#[derive(Clone, PartialEq, prost::Message)]
struct Quote {
    #[prost(string, tag = "1")]
    region: String,
}

impl Event for Quote {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.macro_quote");
    const EVENT_TYPE: &'static str = "macro_quote";
    const FULL_NAME: &'static str = "cqc.events.v1.MacroQuote";
}

const EU_QUOTES: Topic<Quote> = Topic::new("cqc.events.v1.macro_quote.eu");
const US_QUOTES: Topic<Quote> = Topic::new("cqc.events.v1.macro_quote.us");

// ---------------------------------------------------------------------------------------------
// Helpers.

/// What handlers record, shared with the test through `State<Probe>`.
#[derive(Default)]
struct Probe {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    dropped: AtomicUsize,
    completed: AtomicUsize,
    seen: Mutex<Vec<u64>>,
    attempts: Mutex<Vec<(u32, Instant)>>,
    by_handler: Mutex<HashMap<&'static str, Vec<u64>>>,
    groups: Mutex<Vec<String>>,
    regions: Mutex<Vec<String>>,
}

impl Probe {
    fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    fn record(&self, handler: &'static str, n: u64) {
        self.by_handler
            .lock()
            .unwrap()
            .entry(handler)
            .or_default()
            .push(n);
        self.calls.fetch_add(1, SeqCst);
    }

    fn of(&self, handler: &'static str) -> Vec<u64> {
        let mut v = self
            .by_handler
            .lock()
            .unwrap()
            .get(handler)
            .cloned()
            .unwrap_or_default();
        v.sort_unstable();
        v
    }
}

/// Counts the drop of a handler future (a timeout must drop it).
struct DropGuard(State<Probe>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, SeqCst);
    }
}

fn memory_bus() -> EventBus {
    let mut config = EventBusConfig::memory();
    config.consumer.backoff = vec![Duration::from_millis(10)];
    MemoryBus::new(config).unwrap().into()
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn dead_letters(bus: &EventBus) -> Vec<bus::memory::DeadLetter> {
    bus.as_memory().unwrap().dead_letters()
}

// ---------------------------------------------------------------------------------------------
// retry

#[event_handler(
    retry(attempts = 3, initial_delay = "1ms", jitter = 0.0),
    max_deliver = 1
)]
async fn always_retryable(event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.calls.fetch_add(1, SeqCst);
    Err(HandlerError::retryable(format!("tick {} failed", event.n)))
}

#[tokio::test]
async fn retry_runs_the_handler_up_to_attempts_times() {
    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe(always_retryable.with_state(probe.clone()))
        .await
        .unwrap();
    bus.publish(&Tick { n: 7 }).await.unwrap();
    wait_until("the dead letter", || dead_letters(&bus).len() == 1).await;
    bus.close().await.unwrap();

    assert_eq!(probe.calls(), 3, "three runs in-process for one delivery");
    let dl = &dead_letters(&bus)[0];
    assert_eq!(dl.headers.get(DLQ_DELIVERIES), Some("1"));
    assert_eq!(dl.headers.get(DLQ_ERROR_CLASS), Some("retryable"));
    assert!(dl.headers.get(DLQ_ERROR).unwrap().contains("tick 7 failed"));
}

// ---------------------------------------------------------------------------------------------
// timeout

#[event_handler(timeout = "50ms", max_deliver = 1)]
async fn too_slow(_event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    let _guard = DropGuard(probe.clone());
    probe.calls.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    probe.completed.fetch_add(1, SeqCst);
    Ok(())
}

#[tokio::test]
async fn timeout_drops_the_handler_future() {
    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe(too_slow.with_state(probe.clone()))
        .await
        .unwrap();
    let start = Instant::now();
    bus.publish(&Tick { n: 1 }).await.unwrap();
    wait_until("the dead letter", || dead_letters(&bus).len() == 1).await;
    let elapsed = start.elapsed();

    assert_eq!(probe.calls(), 1);
    assert_eq!(
        probe.dropped.load(SeqCst),
        1,
        "the handler future was dropped"
    );
    assert_eq!(
        probe.completed.load(SeqCst),
        0,
        "the handler did not run on"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "gave up after {elapsed:?}"
    );
    let dl = &dead_letters(&bus)[0];
    assert_eq!(dl.headers.get(DLQ_ERROR_CLASS), Some("timeout"));
    bus.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// recovery and error_handler

static RECOVERED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static UNRECOVERED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Acknowledges panics (records them); passes other errors on.
fn swallow_panics(err: HandlerError, _delivery: &Delivery) -> Result<(), HandlerError> {
    if err.class() == ErrorClass::Panic {
        RECOVERED.lock().unwrap().push(err.to_string());
        return Ok(());
    }
    Err(err)
}

fn swallow_panics_unrecovered(err: HandlerError, _delivery: &Delivery) -> Result<(), HandlerError> {
    UNRECOVERED
        .lock()
        .unwrap()
        .push(err.into_source().to_string());
    Ok(())
}

#[event_handler(error_handler = swallow_panics, recovery, max_deliver = 1)]
async fn panics_with_recovery(event: Tick) -> Result<(), HandlerError> {
    panic!("tick {} exploded", event.n)
}

#[event_handler(error_handler = swallow_panics_unrecovered, max_deliver = 1)]
async fn panics_without_recovery(event: Tick) -> Result<(), HandlerError> {
    panic!("tick {} exploded", event.n)
}

#[tokio::test]
async fn recovery_turns_a_panic_into_an_error_outer_middleware_sees() {
    // With `recovery` inside the error handler, the panic reaches it as an error and is
    // swallowed: nothing is dead-lettered.
    let bus = memory_bus();
    bus.subscribe(panics_with_recovery).await.unwrap();
    bus.publish(&Tick { n: 3 }).await.unwrap();
    wait_until("the error handler", || {
        !RECOVERED.lock().unwrap().is_empty()
    })
    .await;
    bus.close().await.unwrap();
    assert!(dead_letters(&bus).is_empty());
    let seen = RECOVERED.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].contains("panic") && seen[0].contains("tick 3 exploded"),
        "{seen:?}"
    );

    // Without it the panic unwinds through the error handler; the backend dead-letters it.
    let bus = memory_bus();
    bus.subscribe(panics_without_recovery).await.unwrap();
    bus.publish(&Tick { n: 4 }).await.unwrap();
    wait_until("the dead letter", || dead_letters(&bus).len() == 1).await;
    bus.close().await.unwrap();
    assert!(
        UNRECOVERED.lock().unwrap().is_empty(),
        "the error handler never saw the panic"
    );
    assert_eq!(
        dead_letters(&bus)[0].headers.get(DLQ_ERROR_CLASS),
        Some("panic")
    );
}

/// Gives up at once on any error.
fn give_up(err: HandlerError, _delivery: &Delivery) -> Result<(), HandlerError> {
    Err(HandlerError::permanent(err.into_source()))
}

#[event_handler(error_handler = give_up, max_deliver = 5, backoff = ["10ms"])]
async fn flaky(_event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.calls.fetch_add(1, SeqCst);
    Err(HandlerError::retryable("flaky dependency"))
}

#[tokio::test]
async fn error_handler_maps_the_error() {
    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe(flaky.with_state(probe.clone()))
        .await
        .unwrap();
    bus.publish(&Tick { n: 1 }).await.unwrap();
    wait_until("the dead letter", || dead_letters(&bus).len() == 1).await;
    bus.close().await.unwrap();
    // Retryable with 5 deliveries allowed, but the error handler made it permanent.
    assert_eq!(probe.calls(), 1);
    let dl = &dead_letters(&bus)[0];
    assert_eq!(dl.headers.get(DLQ_ERROR_CLASS), Some("permanent"));
    assert_eq!(dl.headers.get(DLQ_DELIVERIES), Some("1"));
}

// ---------------------------------------------------------------------------------------------
// middleware order: first written = outermost

#[event_handler(
    error_handler = give_up,
    retry(attempts = 3, initial_delay = "1ms", jitter = 0.0),
    max_deliver = 1
)]
async fn give_up_outside_retry(_event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.calls.fetch_add(1, SeqCst);
    Err(HandlerError::retryable("no"))
}

#[event_handler(
    retry(attempts = 3, initial_delay = "1ms", jitter = 0.0),
    error_handler = give_up,
    max_deliver = 1
)]
async fn retry_outside_give_up(_event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.calls.fetch_add(1, SeqCst);
    Err(HandlerError::retryable("no"))
}

#[tokio::test]
async fn middleware_applies_in_the_order_written() {
    let outer_error_handler = State::new(Probe::default());
    let outer_retry = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe_all(bus::handlers![
        give_up_outside_retry.with_state(outer_error_handler.clone()),
        retry_outside_give_up.with_state(outer_retry.clone()),
    ])
    .await
    .unwrap();
    bus.publish(&Tick { n: 1 }).await.unwrap();
    wait_until("two dead letters", || dead_letters(&bus).len() == 2).await;
    bus.close().await.unwrap();
    // Retry inside the error handler retries the retryable error, then it is made permanent.
    assert_eq!(outer_error_handler.calls(), 3);
    // Retry outside sees the permanent error and does not retry.
    assert_eq!(outer_retry.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// concurrency and ordered

async fn track(probe: &Probe, n: u64) {
    let now = probe.in_flight.fetch_add(1, SeqCst) + 1;
    probe.max_in_flight.fetch_max(now, SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    probe.in_flight.fetch_sub(1, SeqCst);
    probe.seen.lock().unwrap().push(n);
    probe.calls.fetch_add(1, SeqCst);
}

#[event_handler(concurrency = 3)]
async fn three_at_a_time(event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    track(&probe, event.n).await;
    Ok(())
}

#[event_handler(ordered)]
async fn one_at_a_time(event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    track(&probe, event.n).await;
    Ok(())
}

#[tokio::test]
async fn concurrency_bounds_handlers_in_flight_and_ordered_keeps_order() {
    let three = State::new(Probe::default());
    let one = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe(three_at_a_time.with_state(three.clone()))
        .await
        .unwrap();
    bus.subscribe(one_at_a_time.with_state(one.clone()))
        .await
        .unwrap();
    for n in 1..=12 {
        bus.publish(&Tick { n }).await.unwrap();
    }
    wait_until("all handled", || three.calls() == 12 && one.calls() == 12).await;
    bus.close().await.unwrap();
    assert_eq!(
        three.max_in_flight.load(SeqCst),
        3,
        "at most 3, and 3 were reached"
    );
    assert_eq!(one.max_in_flight.load(SeqCst), 1);
    assert_eq!(
        *one.seen.lock().unwrap(),
        (1..=12).collect::<Vec<u64>>(),
        "in order"
    );
}

// ---------------------------------------------------------------------------------------------
// groups

#[event_handler(group = "billing")]
async fn billing_a(event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.record("billing_a", event.n);
    Ok(())
}

#[event_handler(group = "billing")]
async fn billing_b(event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.record("billing_b", event.n);
    Ok(())
}

#[event_handler]
async fn audit_a(event: Tick, delivery: Delivery, probe: State<Probe>) -> Result<(), HandlerError> {
    probe
        .groups
        .lock()
        .unwrap()
        .push(delivery.group().to_owned());
    probe.record("audit_a", event.n);
    Ok(())
}

#[event_handler]
async fn audit_b(event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.record("audit_b", event.n);
    Ok(())
}

#[tokio::test]
async fn one_group_shares_events_and_each_group_gets_all() {
    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe_all(bus::handlers![
        billing_a.with_state(probe.clone()),
        billing_b.with_state(probe.clone()),
        audit_a.with_state(probe.clone()),
        audit_b.with_state(probe.clone()),
    ])
    .await
    .unwrap();
    for n in 1..=20 {
        bus.publish(&Tick { n }).await.unwrap();
    }
    wait_until("60 deliveries", || probe.calls() == 60).await;
    bus.close().await.unwrap();

    let all: Vec<u64> = (1..=20).collect();
    let mut billing = probe.of("billing_a");
    billing.extend(probe.of("billing_b"));
    billing.sort_unstable();
    assert_eq!(
        billing, all,
        "the billing group got each event exactly once"
    );
    assert_eq!(
        probe.of("audit_a"),
        all,
        "default groups differ: each handler gets all"
    );
    assert_eq!(probe.of("audit_b"), all);
    // The default group is `{consumer_name}-{handler name}`.
    assert!(
        probe
            .groups
            .lock()
            .unwrap()
            .iter()
            .all(|g| g == "service-audit_a")
    );
}

// ---------------------------------------------------------------------------------------------
// max_deliver and backoff

#[event_handler(max_deliver = 3, backoff = ["40ms"])]
async fn redelivered(
    _event: Tick,
    delivery: Delivery,
    probe: State<Probe>,
) -> Result<(), HandlerError> {
    probe
        .attempts
        .lock()
        .unwrap()
        .push((delivery.attempt(), Instant::now()));
    probe.calls.fetch_add(1, SeqCst);
    Err(HandlerError::retryable("not yet"))
}

#[tokio::test]
async fn max_deliver_and_backoff_drive_redelivery() {
    // The configured backoff is 1s, 5s, 30s: the attribute's 40ms must win.
    let bus: EventBus = MemoryBus::new(EventBusConfig::memory()).unwrap().into();
    let probe = State::new(Probe::default());
    bus.subscribe(redelivered.with_state(probe.clone()))
        .await
        .unwrap();
    bus.publish(&Tick { n: 1 }).await.unwrap();
    wait_until("the dead letter", || dead_letters(&bus).len() == 1).await;
    bus.close().await.unwrap();

    let attempts = probe.attempts.lock().unwrap().clone();
    assert_eq!(attempts.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3]);
    for pair in attempts.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= Duration::from_millis(35),
            "redelivered after {gap:?}"
        );
        assert!(
            gap < Duration::from_millis(900),
            "the config's 1s backoff was used: {gap:?}"
        );
    }
    assert_eq!(dead_letters(&bus)[0].headers.get(DLQ_DELIVERIES), Some("3"));
}

// ---------------------------------------------------------------------------------------------
// metrics, through a local recorder

#[event_handler(metrics, group = "metered", max_deliver = 1)]
async fn metered(event: Tick) -> Result<(), HandlerError> {
    if event.n.is_multiple_of(2) {
        return Err(HandlerError::permanent("even ticks are rejected"));
    }
    Ok(())
}

// Current-thread runtime: handlers run on the test thread, where the local recorder is.
#[tokio::test(flavor = "current_thread")]
async fn metrics_are_recorded_by_topic_group_and_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let bus = memory_bus();
    bus.subscribe(metered).await.unwrap();
    for n in 1..=4 {
        bus.publish(&Tick { n }).await.unwrap();
    }
    wait_until("two dead letters", || dead_letters(&bus).len() == 2).await;
    bus.close().await.unwrap();

    let mut counters = HashMap::new();
    let mut durations = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if !key.name().starts_with("bus_handler_") {
            continue; // the bus's own series (`bus::telemetry`), tested in observability.rs
        }
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(label("topic"), Tick::TOPIC.as_str());
        assert_eq!(label("group"), "metered");
        match value {
            DebugValue::Counter(n) if key.name() == HANDLER_TOTAL => {
                counters.insert(label("outcome"), n);
            }
            DebugValue::Histogram(v) if key.name() == HANDLER_DURATION => durations += v.len(),
            other => panic!("unexpected metric {key:?} = {other:?}"),
        }
    }
    assert_eq!(counters.get("ok"), Some(&2), "{counters:?}");
    assert_eq!(counters.get("permanent"), Some(&2), "{counters:?}");
    assert_eq!(durations, 4);
}

// ---------------------------------------------------------------------------------------------
// logging, through a local subscriber

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[event_handler(logging, group = "logged-info")]
async fn logged_at_info(_event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.calls.fetch_add(1, SeqCst);
    Ok(())
}

#[event_handler(logging(level = "debug"), group = "logged-debug")]
async fn logged_at_debug(_event: Tick, probe: State<Probe>) -> Result<(), HandlerError> {
    probe.calls.fetch_add(1, SeqCst);
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn logging_writes_a_line_per_delivery_at_its_level() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe_all(bus::handlers![
        logged_at_info.with_state(probe.clone()),
        logged_at_debug.with_state(probe.clone()),
    ])
    .await
    .unwrap();
    bus.publish(&Tick { n: 1 }).await.unwrap();
    wait_until("both handlers", || probe.calls() == 2).await;
    bus.close().await.unwrap();

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line = |group: &str| {
        text.lines()
            .find(|l| l.contains("event handled") && l.contains(&format!("group=\"{group}\"")))
            .unwrap_or_else(|| panic!("no line for {group} in:\n{text}"))
            .to_owned()
    };
    let info = line("logged-info");
    assert!(
        info.contains(" INFO ") && info.contains("outcome=\"ok\""),
        "{info}"
    );
    assert!(
        info.contains("topic=\"cqc.events.v1.macro_tick\""),
        "{info}"
    );
    let debug = line("logged-debug");
    assert!(
        debug.contains(" DEBUG ") && debug.contains("outcome=\"ok\""),
        "{debug}"
    );
}

// ---------------------------------------------------------------------------------------------
// topics

#[event_handler(topic = EU_QUOTES)]
async fn eu_quotes(event: Quote, probe: State<Probe>) -> Result<(), HandlerError> {
    probe
        .regions
        .lock()
        .unwrap()
        .push(format!("eu_quotes:{}", event.region));
    Ok(())
}

#[event_handler(topic = "cqc.events.v1.macro_quote.*")]
async fn regional_quotes(event: Quote, probe: State<Probe>) -> Result<(), HandlerError> {
    probe
        .regions
        .lock()
        .unwrap()
        .push(format!("regional:{}", event.region));
    probe.calls.fetch_add(1, SeqCst);
    Ok(())
}

#[event_handler]
async fn default_quotes(event: Quote, probe: State<Probe>) -> Result<(), HandlerError> {
    probe
        .regions
        .lock()
        .unwrap()
        .push(format!("default:{}", event.region));
    probe.calls.fetch_add(1, SeqCst);
    Ok(())
}

#[tokio::test]
async fn topic_selects_what_the_handler_hears() {
    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe_all(bus::handlers![
        eu_quotes.with_state(probe.clone()),
        regional_quotes.with_state(probe.clone()),
        default_quotes.with_state(probe.clone()),
    ])
    .await
    .unwrap();
    bus.publish_to(
        US_QUOTES,
        &Quote {
            region: "us".into(),
        },
    )
    .await
    .unwrap();
    bus.publish_to(
        EU_QUOTES,
        &Quote {
            region: "eu".into(),
        },
    )
    .await
    .unwrap();
    bus.publish(&Quote {
        region: "none".into(),
    })
    .await
    .unwrap();
    wait_until("three deliveries", || probe.calls() == 3).await;
    bus.close().await.unwrap();

    let mut got = probe.regions.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        ["default:none", "eu_quotes:eu", "regional:eu", "regional:us"]
    );
}

// ---------------------------------------------------------------------------------------------
// The generated value: name, settings, direct calls, other error types, a renamed crate.

#[event_handler(
    group = "tuned",
    concurrency = 4,
    max_deliver = 7,
    backoff = ["250ms", "1s", "2m"],
    topic = "cqc.events.v1.macro_tick.>"
)]
async fn tuned(_event: Tick) -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler(ordered)]
async fn in_order(_event: Tick) -> Result<(), HandlerError> {
    Ok(())
}

/// Returns a plain `std::io::Error`, which converts into a retryable `HandlerError`.
#[event_handler]
async fn io_errors(event: Tick) -> Result<(), std::io::Error> {
    if event.n == 0 {
        return Err(std::io::Error::other("tick zero"));
    }
    Ok(())
}

#[event_handler(crate = "renamed_bus", max_deliver = 1)]
async fn via_renamed_crate(
    _event: Tick,
    probe: renamed_bus::State<Probe>,
) -> Result<(), renamed_bus::HandlerError> {
    probe.calls.fetch_add(1, SeqCst);
    Ok(())
}

#[test]
fn the_generated_value_carries_the_attribute() {
    let sub = tuned.into_subscription();
    assert_eq!(sub.name(), "tuned");
    assert_eq!(tuned::NAME, "tuned");
    assert_eq!(sub.filter(), "cqc.events.v1.macro_tick.>");
    assert_eq!(sub.group(), Some("tuned"));
    let o = sub.options();
    assert_eq!(o.concurrency, Some(4));
    assert_eq!(o.max_deliver, Some(7));
    assert!(!o.ordered);
    let want = [
        Duration::from_millis(250),
        Duration::from_secs(1),
        Duration::from_secs(120),
    ];
    assert_eq!(o.backoff.as_deref(), Some(&want[..]));

    let sub = in_order.into_subscription();
    assert!(sub.options().ordered);
    assert_eq!(sub.filter(), Tick::TOPIC.as_str());
    assert_eq!(
        sub.group(),
        None,
        "the default group comes from the configuration"
    );
}

#[tokio::test]
async fn the_function_is_still_callable_directly() {
    assert!(io_errors::handle(Tick { n: 1 }).await.is_ok());
    let err: HandlerError = io_errors::handle(Tick { n: 0 }).await.unwrap_err().into();
    assert!(err.is_retryable());
    let probe = State::new(Probe::default());
    always_retryable::handle(Tick { n: 1 }, probe.clone())
        .await
        .unwrap_err();
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn a_renamed_runtime_crate_works() {
    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe_all(bus::handlers![
        io_errors,
        via_renamed_crate.with_state(probe.clone())
    ])
    .await
    .unwrap();
    bus.publish(&Tick { n: 0 }).await.unwrap();
    wait_until("the handler", || probe.calls() == 1).await;
    bus.close().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Generated CQC events: the typed topic constants of `bus-build` plug into `topic = ...`.

#[event_handler(topic = cqc::events::v1::topics::PRICE_UPDATED, group = "cqc-prices")]
async fn cqc_prices(
    event: cqc::events::v1::PriceUpdated,
    delivery: Delivery,
    probe: State<Probe>,
) -> Result<(), HandlerError> {
    assert_eq!(delivery.event_type(), Some("cqc.events.v1.PriceUpdated"));
    let price = event.price.unwrap_or_default();
    probe.regions.lock().unwrap().push(price.market_id);
    probe.calls.fetch_add(1, SeqCst);
    Ok(())
}

#[tokio::test]
async fn generated_cqc_events_and_topics_work() {
    use cqc::events::v1::PriceUpdated;
    use cqc::markets::v1::Price;

    let probe = State::new(Probe::default());
    let bus = memory_bus();
    bus.subscribe(cqc_prices.with_state(probe.clone()))
        .await
        .unwrap();
    let event = PriceUpdated {
        event_id: "p-1".into(),
        price: Some(Price {
            market_id: "eth-usd".into(),
            value: 3000.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    bus.publish(&event).await.unwrap();
    wait_until("the price", || probe.calls() == 1).await;
    bus.close().await.unwrap();
    assert_eq!(*probe.regions.lock().unwrap(), ["eth-usd"]);
}

// ---------------------------------------------------------------------------------------------
// Ordering by key.

#[derive(Clone, PartialEq, prost::Message)]
struct Keyed {
    #[prost(string, tag = "1")]
    account: String,
    #[prost(uint64, tag = "2")]
    n: u64,
}

impl Event for Keyed {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.macro_keyed");
    const EVENT_TYPE: &'static str = "macro_keyed";
    const FULL_NAME: &'static str = "cqc.events.v1.MacroKeyed";
}

#[derive(Default)]
struct Ledger {
    seen: Mutex<Vec<(String, u64)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[event_handler(ordered_by = account, concurrency = 4)]
async fn post_to_account(event: Keyed, ledger: State<Ledger>) -> Result<(), HandlerError> {
    let now = ledger.in_flight.fetch_add(1, SeqCst) + 1;
    ledger.max_in_flight.fetch_max(now, SeqCst);
    tokio::time::sleep(Duration::from_millis(3)).await;
    ledger.in_flight.fetch_sub(1, SeqCst);
    ledger.seen.lock().unwrap().push((event.account, event.n));
    Ok(())
}

#[tokio::test]
async fn ordered_by_a_field_keeps_each_account_in_order() {
    let bus = EventBus::memory();
    let ledger = State::new(Ledger::default());
    bus.subscribe(post_to_account.with_state(ledger.clone()))
        .await
        .unwrap();
    for n in 0..30 {
        let account = format!("acc-{}", n % 3);
        bus.publish(&Keyed { account, n }).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while ledger.seen.lock().unwrap().len() < 30 {
        assert!(
            Instant::now() < deadline,
            "only {:?}",
            ledger.seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut by_account: HashMap<String, Vec<u64>> = HashMap::new();
    for (account, n) in ledger.seen.lock().unwrap().iter() {
        by_account.entry(account.clone()).or_default().push(*n);
    }
    for (account, ns) in &by_account {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{account}: {ns:?}");
    }
    assert!(
        ledger.max_in_flight.load(SeqCst) > 1,
        "accounts ran one at a time"
    );
    bus.close().await.unwrap();
}
