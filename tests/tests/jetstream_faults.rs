//! Faults, each ending with an exact count of distinct event ids received = sent:
//! server restarts, a consumer process killed with SIGKILL, a cluster losing its stream leader.
//! Plus what a cluster with a node down does to connecting and publishing.
//!
//! Each test prints its counts (sent, distinct received, deliveries) on stderr; run with
//! `--nocapture` to see them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::testing::{NatsCluster, NatsServer};
use bus::{Error, Event, EventBus, EventBusConfig, HandlerError, Subscription};
use tests::events::Ping;
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

/// Distinct sequence numbers seen, and how many deliveries in all.
#[derive(Default)]
struct Seen {
    distinct: HashSet<u64>,
    deliveries: u64,
}

type Shared = Arc<Mutex<Seen>>;

fn distinct(seen: &Shared) -> usize {
    seen.lock().unwrap().distinct.len()
}

async fn subscribe_counter(bus: &EventBus, seen: &Shared) {
    let s = Arc::clone(seen);
    bus.subscribe(
        Subscription::new("counter", Ping::TOPIC)
            .concurrency(32)
            .handler(move |e: Ping| {
                let mut seen = s.lock().unwrap();
                seen.deliveries += 1;
                seen.distinct.insert(e.seq);
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .unwrap();
}

/// Publishes `0..n` in batches, retrying a failed batch whole (ids make it idempotent).
/// Returns how many batch attempts failed.
async fn publish_all(bus: EventBus, n: u64, batch: u64) -> u64 {
    let mut failures = 0;
    let mut start = 0;
    while start < n {
        let events: Vec<Ping> = (start..(start + batch).min(n)).map(Ping::new).collect();
        match bus.publish_batch(&events).await {
            Ok(acks) => {
                assert_eq!(acks.len(), events.len());
                start += batch;
            }
            Err(e) => {
                assert!(e.is_retryable(), "only transient failures expected: {e}");
                failures += 1;
                assert!(failures < 200, "publishing never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    failures
}

async fn wait_distinct(seen: &Shared, n: usize, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while distinct(seen) < n {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {n} distinct events after {timeout:?}",
            distinct(seen)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fault_config(servers: Vec<String>) -> EventBusConfig {
    let mut c = EventBusConfig::jetstream(servers).with_cqc_conventions();
    c.consumer_name = "faults".into();
    c.ack_wait = Duration::from_secs(3);
    c.publish_timeout = Duration::from_secs(10);
    c.consumer.backoff = vec![Duration::from_millis(100)];
    c.max_deliver = 20;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restarted_twice_during_20_000_events_loses_nothing() {
    const N: u64 = 20_000;
    let mut server = NatsServer::start().await;
    let bus = EventBus::connect(fault_config(vec![server.url()]))
        .await
        .unwrap();
    let seen: Shared = Arc::default();
    subscribe_counter(&bus, &seen).await;
    let publisher = tokio::spawn(publish_all(bus.clone(), N, 250));

    for (i, at) in [N as usize / 4, N as usize / 2].into_iter().enumerate() {
        wait_distinct(&seen, at, Duration::from_secs(60), "before a restart").await;
        server.restart().await;
        eprintln!("restart {} done at {} distinct", i + 1, distinct(&seen));
    }
    let failed_batches = publisher.await.unwrap();
    wait_distinct(
        &seen,
        N as usize,
        Duration::from_secs(90),
        "after the restarts",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.distinct.len(), N as usize);
        assert!(seen.distinct.iter().all(|s| *s < N));
        eprintln!(
            "server restarts: sent {N}, distinct received {}, deliveries {}, \
             failed batch attempts {failed_batches}",
            seen.distinct.len(),
            seen.deliveries
        );
    }
    bus.close().await.unwrap();
}

fn read_seqs(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

async fn spawn_worker(url: &str, out: &std::path::Path) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jetstream_worker"))
        .env("NATS_URL", url)
        .env("OUT_FILE", out)
        .env("GROUP", "fault-worker")
        .env("ACK_WAIT_MS", "2000")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the worker");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("worker ready in time")
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_process_killed_and_restarted_loses_nothing() {
    const N: u64 = 6_000;
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let mut worker = spawn_worker(&server.url(), &first).await;

    let bus = EventBus::connect(fault_config(vec![server.url()]))
        .await
        .unwrap();
    let events: Vec<Ping> = (0..N).map(Ping::new).collect();
    bus.publish_batch(&events).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while read_seqs(&first).len() < N as usize / 4 {
        assert!(
            Instant::now() < deadline,
            "the first worker made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.kill().await.unwrap(); // SIGKILL
    let handled_by_first = read_seqs(&first).len();
    assert!(handled_by_first < N as usize, "killed mid-stream");

    let mut worker = spawn_worker(&server.url(), &second).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let union = || -> HashSet<u64> {
        read_seqs(&first)
            .into_iter()
            .chain(read_seqs(&second))
            .collect()
    };
    while union().len() < N as usize {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} distinct after the restart",
            union().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.kill().await.unwrap();
    let all = union();
    assert_eq!(all.len(), N as usize);
    assert!(all.iter().all(|s| *s < N));
    let deliveries = read_seqs(&first).len() + read_seqs(&second).len();
    eprintln!(
        "consumer SIGKILL: sent {N}, distinct received {}, deliveries {deliveries} \
         ({handled_by_first} by the killed worker)",
        all.len()
    );
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_losing_its_stream_leader_loses_nothing() {
    const N: u64 = 10_000;
    let mut cluster = NatsCluster::start(3).await;
    let mut config = fault_config(cluster.urls());
    config.stream.replicas = 3;
    config.publish_timeout = Duration::from_secs(20);
    let bus = EventBus::connect(config).await.unwrap();
    let seen: Shared = Arc::default();
    subscribe_counter(&bus, &seen).await;
    let publisher = tokio::spawn(publish_all(bus.clone(), N, 250));

    wait_distinct(
        &seen,
        N as usize / 3,
        Duration::from_secs(60),
        "before the leader loss",
    )
    .await;
    let leader = {
        // A stream leader busy with the publishes may not answer in time: ask again.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cluster.stream_leader("CQC_EVENTS").await {
                Some(l) => break l,
                None => {
                    assert!(Instant::now() < deadline, "the stream has no leader");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    cluster.node(leader).kill().await;
    eprintln!(
        "killed stream leader n{leader} at {} distinct",
        distinct(&seen)
    );
    let new_leader = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cluster.stream_leader("CQC_EVENTS").await {
                Some(l) if l != leader => break l,
                _ => {
                    assert!(Instant::now() < deadline, "no new stream leader elected");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };

    let failed_batches = publisher.await.unwrap();
    wait_distinct(
        &seen,
        N as usize,
        Duration::from_secs(120),
        "after the leader loss",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.distinct.len(), N as usize);
        eprintln!(
            "cluster leader loss: sent {N}, distinct received {}, deliveries {}, new leader n{new_leader}, \
             failed batch attempts {failed_batches}",
            seen.distinct.len(),
            seen.deliveries
        );
    }
    bus.close().await.unwrap();
}

/// A publish while the only server is down fails with a retryable error after
/// `publish_timeout`, and succeeds once the server is back: the caller can retry safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_while_the_server_is_down_is_retryable() {
    let mut server = NatsServer::start().await;
    let mut config = fault_config(vec![server.url()]);
    config.publish_timeout = Duration::from_millis(800);
    let bus = EventBus::connect(config).await.unwrap();
    server.stop().await;
    let err = bus.publish(&Ping::new(1)).await.unwrap_err();
    assert!(
        matches!(err, Error::NotConnected | Error::Timeout { .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    server.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bus.publish(&Ping::new(1)).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish did not recover: {e}"),
        }
    }
    bus.close().await.unwrap();
}

/// A replicated stream waits for its peers: with one of three nodes down, connecting with
/// `stream.replicas = 3` keeps retrying the placement, fails with a retryable error that says
/// what to change if the node stays away, and succeeds once the node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_stream_waits_for_a_restarting_node() {
    let mut cluster = NatsCluster::start(3).await;
    cluster.node(2).stop().await;
    // Node 2 may have led the metadata group: measure placement, not the election.
    cluster.wait_meta_leader().await;
    let mut config = fault_config(cluster.urls());
    config.stream.replicas = 3;
    config.publish_timeout = Duration::from_secs(1); // placement patience is at least 10 s

    let started = Instant::now();
    let err = EventBus::connect(config.clone()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("stream.replicas"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "gave up after {:?}",
        started.elapsed()
    );

    // Placement patience counts from the start of connect; give it room for the node's return.
    config.publish_timeout = Duration::from_secs(20);
    let connecting = tokio::spawn(EventBus::connect(config));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!connecting.is_finished(), "placed R3 with a node down?");
    cluster.node(2).start_again().await;
    let bus = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("connect did not finish after the node came back")
        .unwrap()
        .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.close().await.unwrap();
}
