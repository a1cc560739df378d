//! The `consumer` example stops gracefully on SIGTERM: stopped mid-stream with slow handlers
//! and started again, it handles every event, each exactly once unless redelivered.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bus::EventBus;
use bus::testing::NatsServer;
use cqc::events::v1::PriceUpdated;
use cqc::markets::v1::Price;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const EVENTS: u64 = 400;
/// How long each event takes in the example's handler: 8 at once, so ~50 s of work in all
/// would be far longer than the wait before SIGTERM.
const WORK_MS: &str = "100";

/// `(stream sequence, attempt)` lines the example appended before acknowledging.
fn journal(path: &Path) -> Vec<(u64, u32)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (seq, attempt) = l.split_once(' ')?;
            Some((seq.parse().ok()?, attempt.parse().ok()?))
        })
        .collect()
}

fn spawn_consumer(url: &str, journal: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_consumer"))
        .args(["--work-ms", WORK_MS, "--journal"])
        .arg(journal)
        .env("BUS_SERVERS", url)
        .env("RUST_LOG", "info")
        // Messages the server sent to the first run's pull requests after it left come back
        // after ack_wait: keep it short.
        .env("BUS_ACK_WAIT", "3s")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the consumer example")
}

async fn wait_for(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; consumer log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigterm(child: &mut Child, log: &Path) -> ExitStatus {
    let pid = child.id().expect("the consumer runs");
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid} failed");
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the consumer did not exit after SIGTERM; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
        .unwrap()
}

fn price(i: u64) -> PriceUpdated {
    PriceUpdated {
        event_id: format!("sigterm-{i}"),
        price: Some(Price {
            market_id: "BTC-USD".into(),
            value: i as f64,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_then_restart_loses_nothing() {
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = (dir.path().join("journal"), dir.path().join("log"));

    let bus = EventBus::connect(server.bus_config()).await.unwrap();
    // A new durable consumer starts at new events: publish once it is there.
    let mut consumer = spawn_consumer(&server.url(), &path, &log);
    wait_for("the consumer to subscribe", &log, || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("consuming"))
    })
    .await;
    let events: Vec<PriceUpdated> = (0..EVENTS).map(price).collect();
    bus.publish_batch(&events).await.unwrap();
    wait_for("the first run to handle 40 events", &log, || {
        journal(&path).len() >= 40
    })
    .await;
    let status = sigterm(&mut consumer, &log).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success(),
        "exit after SIGTERM: {status}; log:\n{text}"
    );
    assert!(
        text.contains("SIGTERM"),
        "the example names the signal:\n{text}"
    );
    let first_run = journal(&path).len();
    assert!(
        first_run < EVENTS as usize,
        "SIGTERM arrived mid-stream ({first_run} of {EVENTS} handled)"
    );

    let mut consumer = spawn_consumer(&server.url(), &path, &log);
    let distinct = || {
        journal(&path)
            .iter()
            .map(|(s, _)| *s)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    wait_for("every event handled after the restart", &log, || {
        distinct() == EVENTS as usize
    })
    .await;
    let status = sigterm(&mut consumer, &log).await;
    assert!(status.success(), "second exit after SIGTERM: {status}");

    let journal = journal(&path);
    let (first, second) = journal.split_at(first_run);
    let mut handled: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for (seq, attempt) in &journal {
        handled.entry(*seq).or_default().push(*attempt);
    }
    assert_eq!(
        handled.keys().copied().collect::<Vec<_>>(),
        (1..=EVENTS).collect::<Vec<_>>(),
        "every stored event handled"
    );
    // What the first run handled, it acknowledged before exiting: none of it comes again.
    let again: Vec<_> = first
        .iter()
        .filter(|(seq, _)| second.iter().any(|(s, _)| s == seq))
        .collect();
    assert!(
        again.is_empty(),
        "handled before SIGTERM and again after: {again:?}"
    );
    // Otherwise an event is handled once, or more often only through a redelivery.
    for (seq, attempts) in &handled {
        assert!(
            attempts.len() == 1 || attempts.iter().any(|a| *a > 1),
            "event {seq} handled {} times without a redelivery: attempts {attempts:?}",
            attempts.len()
        );
    }
    let info = consumer_info(&server.url()).await;
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "nothing left for the durable consumer"
    );
    bus.close().await.unwrap();
}

/// The example's durable consumer, the only one on the stream.
async fn consumer_info(url: &str) -> async_nats::jetstream::consumer::Info {
    use futures::TryStreamExt;
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("CQC_EVENTS").await.unwrap();
    let infos: Vec<_> = stream.consumers().try_collect().await.unwrap();
    assert_eq!(infos.len(), 1, "one durable consumer: {infos:?}");
    infos.into_iter().next().unwrap()
}
