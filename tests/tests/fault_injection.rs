//! Faults found by attacking the JetStream backend, one test each, by class: events lost,
//! events run twice, closes that lose track, stalls, and errors that said the wrong thing.
//! (Faults both backends share are in the conformance suite; the configuration's bounds are
//! unit tests of `bus::config`; the memory backend's close is in `memory.rs`.)
//!
//! Each test prints its counts on stderr; run with `--nocapture` to see them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bus::testing::NatsServer;
use bus::{
    Delivery, Error, Event, EventBus, EventBusConfig, HandlerError, RawMessage, Subscription,
    headers,
};
use tests::Recorder;
use tests::events::Ping;
use tests::nats::{api, stream_messages};
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(30);

/// A global metrics recorder for this binary (its tests run on multi-thread runtimes, where a
/// local recorder sees nothing of the bus's tasks); each test reads only its own series.
fn metrics() -> &'static metrics_util::debugging::Snapshotter {
    static SNAPSHOTTER: std::sync::OnceLock<metrics_util::debugging::Snapshotter> =
        std::sync::OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().expect("one recorder per binary");
        snapshotter
    })
}

/// The value of counter `name` with exactly `labels` (in any order), if it was registered.
fn counter(name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    metrics()
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let key = key.key();
            let mut have: Vec<_> = key.labels().map(|l| (l.key(), l.value())).collect();
            let mut want = labels.to_vec();
            have.sort_unstable();
            want.sort_unstable();
            match value {
                metrics_util::debugging::DebugValue::Counter(n)
                    if key.name() == name && have == want =>
                {
                    Some(n)
                }
                _ => None,
            }
        })
}

fn config(server: &NatsServer, name: &str) -> EventBusConfig {
    let mut c = server.bus_config();
    c.consumer_name = name.into();
    c
}

/// Records every dead letter's original sequence number and error class.
async fn dead_letters(bus: &EventBus) -> Arc<Recorder<(u64, String)>> {
    let rec = Recorder::new();
    let r = Arc::clone(&rec);
    bus.subscribe(Subscription::raw("dead-letters", "dlq.>").unwrap().handler(
        move |m: RawMessage| {
            let seq = m.headers().get(headers::DLQ_STREAM_SEQ).unwrap_or("0");
            let class = m.headers().get(headers::DLQ_ERROR_CLASS).unwrap_or("");
            r.push((seq.parse().unwrap(), class.to_owned()));
            async { Ok::<_, HandlerError>(()) }
        },
    ))
    .await
    .unwrap();
    rec
}

/// Loss: 40 events, 16 handlers that hang, no handler timeout. The 24 events waiting for a
/// slot are kept alive, so they do not spend their deliveries while no handler runs them; after
/// a restart with a working handler every event is handled or dead-lettered, none missing.
/// (Before, all 40 were pulled at once, the 24 waiting ones aged past `ack_wait` until the
/// server gave up on them, and they were gone: 16 of 40 received, 0 dead letters.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_waiting_behind_stuck_handlers_are_not_lost() {
    const N: u64 = 40;
    let server = NatsServer::start().await;
    let mut c = config(&server, "stuck");
    c.ack_wait = Duration::from_secs(1);
    c.max_deliver = 3;
    c.drain_timeout = Duration::from_millis(200);
    let first = EventBus::connect(c.clone()).await.unwrap();
    let started = Recorder::<u64>::new();
    let s = Arc::clone(&started);
    first
        .subscribe(
            Subscription::new("work", Ping::TOPIC)
                .concurrency(16)
                .no_handler_timeout()
                .handler(move |e: Ping| {
                    s.push(e.seq);
                    std::future::pending::<Result<(), HandlerError>>()
                }),
        )
        .await
        .unwrap();
    let events: Vec<Ping> = (0..N).map(Ping::new).collect();
    first.publish_batch(&events).await.unwrap();
    started.wait_for(16, WAIT).await;
    // Long enough for every waiting event to have used up its 3 deliveries of 1 s each.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(started.len(), 16, "only the 16 slots ran");
    first.close().await.unwrap();

    let second = EventBus::connect(c).await.unwrap();
    let dlq = dead_letters(&second).await;
    let handled = Recorder::<u64>::new();
    let h = Arc::clone(&handled);
    second
        .subscribe(
            Subscription::new("work", Ping::TOPIC).handler(move |e: Ping| {
                h.push(e.seq);
                async { Ok::<_, HandlerError>(()) }
            }),
        )
        .await
        .unwrap();
    let accounted = || {
        let mut all: BTreeSet<u64> = handled.items().into_iter().collect();
        all.extend(dlq.items().into_iter().map(|(seq, _)| seq - 1));
        all
    };
    let deadline = Instant::now() + WAIT;
    while accounted().len() < N as usize {
        assert!(
            Instant::now() < deadline,
            "{} of {N} handled or dead-lettered: missing {:?}",
            accounted().len(),
            (0..N)
                .filter(|s| !accounted().contains(s))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "stuck handlers: {N} sent, {} handled after the restart, {} dead-lettered, 0 missing",
        handled.items().into_iter().collect::<BTreeSet<_>>().len(),
        dlq.len()
    );
    second.close().await.unwrap();
}

/// Duplicates: a backlog of 400 events for 16 handlers of 250 ms with a 2 s `ack_wait`. The
/// subscription takes only what its handlers can start in time and keeps what it holds alive,
/// so no event runs twice. (Before, the whole backlog was pulled at once and every event
/// waiting longer than `ack_wait` was delivered again: 1 248 extra runs for 1 500 events.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handlers_do_not_run_events_twice() {
    const N: u64 = 400;
    let server = NatsServer::start().await;
    let mut c = config(&server, "slow");
    c.ack_wait = Duration::from_secs(2);
    let bus = EventBus::connect(c).await.unwrap();
    let runs = Recorder::<(u64, u32)>::new();
    let r = Arc::clone(&runs);
    bus.subscribe(
        Subscription::new("work", Ping::TOPIC)
            .concurrency(16)
            .handler(move |e: Ping, d: Delivery| {
                r.push((e.seq, d.attempt()));
                async {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    let events: Vec<Ping> = (0..N).map(Ping::new).collect();
    bus.publish_batch(&events).await.unwrap();
    let distinct = || {
        runs.items()
            .iter()
            .map(|(s, _)| *s)
            .collect::<BTreeSet<_>>()
            .len()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while distinct() < N as usize {
        assert!(Instant::now() < deadline, "{} of {N} handled", distinct());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // any redelivery would show by now
    bus.close().await.unwrap();
    let runs = runs.items();
    let again: Vec<_> = runs.iter().filter(|(_, attempt)| *attempt > 1).collect();
    eprintln!(
        "slow handlers: {N} events, {} runs, {} redeliveries",
        runs.len(),
        again.len()
    );
    assert_eq!(runs.len(), N as usize, "redelivered: {again:?}");
}

async fn spawn_worker(server: &NatsServer, out: &std::path::Path) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetstream_worker"))
        .env("NATS_URL", server.url())
        .env("OUT_FILE", out)
        .env("GROUP", "last-delivery")
        .env("ACK_WAIT_MS", "1000")
        .env("MAX_DELIVER", "1")
        .env("HANDLER_DELAY_MS", "600000")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the worker");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("worker ready in time")
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    child
}

/// Loss: a consumer killed during the last delivery it is allowed. The server gives up on the
/// event without anyone failing it; the bus hears the server's max-deliveries advisory and
/// dead-letters the event with class `max_deliveries`. (Before, it stayed in the stream with no
/// dead letter, a documented gap.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_consumer_died_on_its_last_delivery_is_dead_lettered() {
    metrics();
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut worker = spawn_worker(&server, &dir.path().join("out")).await;
    let mut c = config(&server, "last");
    c.ack_wait = Duration::from_secs(1);
    c.max_deliver = 1;
    let bus = EventBus::connect(c).await.unwrap();
    let dlq = dead_letters(&bus).await;
    bus.publish(&Ping::new(7)).await.unwrap();
    // The worker holds the event (its handler runs for minutes); then it dies.
    let durable = bus::jetstream::durable_name("last-delivery", Ping::TOPIC.as_str()).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let info = api(
            &server.url(),
            &format!("CONSUMER.INFO.CQC_EVENTS.{durable}"),
            serde_json::json!({}),
        )
        .await;
        if info["num_ack_pending"].as_u64() == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never took the event: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.kill().await.unwrap();
    // Another member of the group pulls; the server gives up on the event and says so.
    let handled = Recorder::<u64>::new();
    let h = Arc::clone(&handled);
    bus.subscribe(
        Subscription::new("worker", Ping::TOPIC)
            .group("last-delivery")
            .handler(move |e: Ping| {
                h.push(e.seq);
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .unwrap();
    dlq.wait_for(1, WAIT).await;
    assert_eq!(dlq.items()[0], (1, "max_deliveries".to_owned()));
    assert!(handled.is_empty(), "its one delivery was used up");
    // Counted with the dead letters the handlers' verdicts make.
    let labels = [
        ("topic", Ping::TOPIC.as_str()),
        ("group", "last-delivery"),
        ("class", "max_deliveries"),
    ];
    let deadline = Instant::now() + WAIT;
    while counter(bus::telemetry::DEAD_LETTERS_TOTAL, &labels) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "bus_dead_letters_total {labels:?}: {:?}",
            counter(bus::telemetry::DEAD_LETTERS_TOTAL, &labels)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bus.close().await.unwrap();
}

/// Closing during a 30 000-event batch lets the batch run to its end, or reports exactly which
/// of its events are stored; either way the stream holds exactly the acknowledged events.
/// (Before, `close()` returned at once and the batch failed seconds later with a retryable
/// "broken pipe", with no way to tell which of the 10 394 stored events went through.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_a_batch_accounts_for_every_event() {
    const N: u64 = 30_000;
    let server = NatsServer::start().await;
    let bus = EventBus::connect(config(&server, "batch")).await.unwrap();
    let events: Vec<Ping> = (0..N).map(Ping::new).collect();
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish_batch(&events).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let closing = Instant::now();
    bus.close().await.unwrap();
    let closed_after = closing.elapsed();
    let stored: BTreeMap<u64, bool> = match publisher.await.unwrap() {
        Ok(acks) => acks.iter().map(|a| (a.sequence, a.duplicate)).collect(),
        Err(Error::PartialBatch { acks, .. }) => acks
            .iter()
            .flatten()
            .map(|a| (a.sequence, a.duplicate))
            .collect(),
        Err(other) => panic!("the batch must say what it stored, got {other}"),
    };
    let in_stream = stream_messages(&server.url(), "CQC_EVENTS").await;
    eprintln!(
        "batch during close: {N} sent, {} acknowledged, {in_stream} in the stream, close took {closed_after:?}",
        stored.len()
    );
    assert_eq!(in_stream, stored.len() as u64);
    assert!(stored.values().all(|duplicate| !duplicate));
}

/// Stall: a stream that is full and discards new events refuses a publish at once, as a
/// permanent error saying so. (Before, the refusal was retried for the whole publish timeout
/// and then reported as retryable.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_refuses_at_once() {
    let server = NatsServer::start().await;
    let created = api(
        &server.url(),
        "STREAM.CREATE.CQC_EVENTS",
        serde_json::json!({
            "name": "CQC_EVENTS", "subjects": ["cqc.events.v1.>"], "retention": "limits",
            "storage": "file", "num_replicas": 1, "max_msgs": 3, "discard": "new",
            "duplicate_window": 120_000_000_000u64,
        }),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let mut c = config(&server, "full");
    c.publish_timeout = Duration::from_secs(5);
    let bus = EventBus::connect(c).await.unwrap();
    for i in 0..3 {
        bus.publish(&Ping::new(i)).await.unwrap();
    }
    let started = Instant::now();
    let err = bus.publish(&Ping::new(3)).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("full"), "{err}");
    bus.close().await.unwrap();
}

/// Error text: requiring TLS of a server that does not speak it says TLS, not "no server
/// reachable".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_of_a_plain_server_says_tls() {
    let server = NatsServer::start().await;
    let mut c = config(&server, "tls");
    let mut tls = bus::config::Tls::default();
    tls.required = true;
    c.tls = Some(tls);
    let err = EventBus::connect(c).await.unwrap_err().to_string();
    assert!(err.contains("TLS"), "{err}");
    assert!(!err.contains("no server reachable"), "{err}");
}
