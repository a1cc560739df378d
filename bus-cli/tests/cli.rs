//! The `bus` binary against a real `nats-server` (started by each test on a free port with a
//! temporary store): every subcommand, including a replay that ends in exactly one new delivery
//! per dead letter, and the errors a user meets.

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::testing::NatsServer;
use bus::{EventBus, EventBusConfig, HandlerError, RawMessage, Subscription};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Generous: the machine running the tests may be loaded.
const PATIENCE: Duration = Duration::from_secs(60);
const PRICE_UPDATED: &str = "cqc.events.v1.price_updated";

/// The `bus` binary with a clean `BUS_*` environment, pointed at `server`.
fn cli(server: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bus"));
    for (name, _) in std::env::vars() {
        if name.starts_with("BUS_") {
            cmd.env_remove(name);
        }
    }
    cmd.arg("--server").arg(server).kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command) -> Output {
    let shown = format!("{cmd:?}");
    tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{shown} did not finish within {PATIENCE:?}"))
        .expect("the bus binary runs")
}

/// Runs `args`, which must succeed; returns standard output.
async fn ok(server: &str, args: &[&str]) -> String {
    let mut cmd = cli(server);
    cmd.args(args);
    let out = run(cmd).await;
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "bus {args:?} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// Runs `args`, which must fail; returns standard error.
async fn fails(server: &str, args: &[&str]) -> String {
    let mut cmd = cli(server);
    cmd.args(args);
    let out = run(cmd).await;
    let (stdout, stderr) = texts(&out);
    assert!(
        !out.status.success(),
        "bus {args:?} succeeded:\nstdout: {stdout}\nstderr: {stderr}"
    );
    stderr
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A bus on `server`: connecting creates the events and dead-letter streams, as a service does.
async fn service(server: &NatsServer) -> EventBus {
    EventBus::connect(EventBusConfig::jetstream([server.url()]).with_cqc_conventions())
        .await
        .expect("the bus connects")
}

async fn js(server: &NatsServer) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap())
}

/// Waits until `check` holds, polling; fails with `what` and the last state seen.
async fn wait_for<F, Fut, T>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, T)>,
    T: std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (done, seen) = check().await;
        if done {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; last seen {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stream_messages(js: &async_nats::jetstream::Context, name: &str) -> u64 {
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

fn price(id: &str, value: &str) -> String {
    format!(r#"{{"eventId": "{id}", "price": {{"marketId": "m-1", "value": {value}}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_tail_decodes_every_event() {
    let server = NatsServer::start().await;
    let url = server.url();
    let bus = service(&server).await;

    let out = ok(&url, &["publish", PRICE_UPDATED, &price("e-1", "101.5")]).await;
    let ack = &json_lines(&out)[0];
    assert_eq!(
        (ack["seq"].as_u64(), ack["id"].as_str()),
        (Some(1), Some("e-1")),
        "{out}"
    );
    assert_eq!(ack["stream"], "CQC_EVENTS");
    // `--id` sets Nats-Msg-Id: the same id again is stored once.
    for _ in 0..2 {
        ok(
            &url,
            &[
                "publish",
                "cqc.events.v1.asset_created",
                r#"{"asset": {"symbol": "ETH"}}"#,
                "--id",
                "fixed",
            ],
        )
        .await;
    }
    // Bytes that are no event of their topic's type.
    bus.publish_raw(
        "cqc.events.v1.asset_created",
        vec![0xff, 0xff],
        bus::Headers::new(),
    )
    .await
    .unwrap();

    let out = ok(&url, &["tail", "--from-start", "--count", "3"]).await;
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["topic"], PRICE_UPDATED);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["type"], "cqc.events.v1.PriceUpdated");
    assert_eq!(lines[0]["event"]["eventId"], "e-1");
    assert_eq!(lines[0]["headers"]["Nats-Msg-Id"], "e-1");
    assert_eq!(
        lines[0]["headers"]["Bus-Event-Type"],
        "cqc.events.v1.PriceUpdated"
    );
    assert_eq!(lines[1]["headers"]["Nats-Msg-Id"], "fixed");
    assert_eq!(lines[1]["event"]["asset"]["symbol"], "ETH");
    assert_eq!(lines[2]["payload_base64"], "//8=");
    assert!(
        lines[2]["decode_error"]
            .as_str()
            .unwrap()
            .contains("AssetCreated"),
        "{}",
        lines[2]
    );

    // A filter, and a start time after everything so far.
    let out = ok(
        &url,
        &[
            "tail",
            "cqc.events.v1.asset_created",
            "--from-start",
            "-n",
            "1",
        ],
    )
    .await;
    assert_eq!(json_lines(&out)[0]["seq"], 2);

    // Live: the tail starts at now, so it prints only what is published after it started.
    // When its consumer is ready cannot be seen from outside, so events are published until
    // one is printed; it must be one of them, not an older one.
    let js = js(&server).await;
    let before = js
        .get_stream("CQC_EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .last_sequence;
    let mut cmd = cli(&url);
    cmd.args(["tail", "cqc.events.v1.*", "--count", "1"])
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut published = 0;
    let line = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tail printed nothing within {PATIENCE:?} of {published} live events"
        );
        let event = cqc::events::v1::PriceUpdated {
            event_id: format!("e-live-{published}"),
            ..Default::default()
        };
        bus.publish(&event).await.unwrap();
        published += 1;
        match tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await {
            Ok(line) => break line.unwrap().expect("a line"),
            Err(_) => continue,
        }
    };
    let live: Value = serde_json::from_str(&line).unwrap();
    assert!(live["seq"].as_u64().unwrap() > before, "{line}");
    assert!(
        live["event"]["eventId"]
            .as_str()
            .unwrap()
            .starts_with("e-live-"),
        "{line}"
    );
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "tail --count 1 exits 0 after one event");
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors_for_what_users_get_wrong() {
    let server = NatsServer::start().await;
    let url = server.url();
    let bus = service(&server).await;

    let e = fails(&url, &["publish", "cqc.events.v1.price_updatd", "{}"]).await;
    assert!(
        e.contains("no known event") && e.contains("cqc.events.v1.price_updated"),
        "{e}"
    );
    let e = fails(
        &url,
        &[
            "publish",
            PRICE_UPDATED,
            r#"{"eventId": "e", "price": {"prise": "1"}}"#,
        ],
    )
    .await;
    assert!(
        e.contains("at `price`") && e.contains("prise") && e.contains("PriceUpdated"),
        "{e}"
    );
    let e = fails(&url, &["publish", PRICE_UPDATED, r#"{"eventId": 12}"#]).await;
    assert!(e.contains("`eventId`"), "{e}");
    let e = fails(&url, &["publish", "--server", &url, "other.topic", "{}"]).await;
    assert!(e.contains("`bus topics`") && e.contains("--proto"), "{e}");
    let e = fails(
        &url,
        &["publish", PRICE_UPDATED, &price("e", "1"), "--id", "a\nb"],
    )
    .await;
    assert!(e.contains("Nats-Msg-Id"), "{e}");
    let e = fails(&url, &["dlq", "replay"]).await;
    assert!(e.contains("--all"), "{e}");
    let e = fails(&url, &["dlq", "show", "99"]).await;
    assert!(e.contains("no dead letter 99"), "{e}");

    // No server there.
    let free = bus::testing::free_port();
    let e = fails(&format!("nats://127.0.0.1:{free}"), &["status"]).await;
    assert!(
        e.contains("no server reachable") && e.contains("servers"),
        "{e}"
    );
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_and_environment() {
    let server = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bus.toml");
    std::fs::write(
        &file,
        format!(
            "servers = [\"{}\"]\nstream_name = \"ORDERS\"\n[stream]\nsubjects = [\"orders.>\"]\n",
            server.url()
        ),
    )
    .unwrap();
    // The file names a stream that is not there: status says so, with the setting.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bus"));
    cmd.args(["status", "--json", "--config"]).arg(&file);
    let out = run(cmd).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let status: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["streams"][0]["name"], "ORDERS");
    assert_eq!(status["streams"][0]["exists"], false);
    assert!(
        status["streams"][0]["error"]
            .as_str()
            .unwrap()
            .contains("BUS_STREAM_NAME")
    );
    // The environment overrides the file.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bus"));
    cmd.args(["status", "--json", "--config"])
        .arg(&file)
        .env("BUS_STREAM_NAME", "OTHER");
    let out = run(cmd).await;
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["streams"][0]["name"], "OTHER");
    // A bad value is named with its variable.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bus"));
    cmd.args(["status", "--config"])
        .arg(&file)
        .env("BUS_ACK_WAIT", "soon");
    let out = run(cmd).await;
    assert!(!out.status.success());
    assert!(texts(&out).1.contains("BUS_ACK_WAIT"), "{}", texts(&out).1);
}

/// What a handler saw: event id and `Bus-Replay-Of`, for deliveries it handled successfully.
#[derive(Default)]
struct Seen {
    handled: Mutex<Vec<(String, Option<String>)>>,
    failures: Mutex<u32>,
}

/// Subscribes group `risk` to price updates; the handler fails permanently while `broken`.
async fn subscribe_risk(bus: &EventBus, broken: Arc<AtomicBool>, seen: Arc<Seen>) {
    let sub = Subscription::raw("risk_prices", PRICE_UPDATED)
        .unwrap()
        .group("risk")
        .handler(move |msg: RawMessage| {
            let (broken, seen) = (Arc::clone(&broken), Arc::clone(&seen));
            async move {
                let event: cqc::events::v1::PriceUpdated =
                    msg.decode().map_err(HandlerError::permanent)?;
                if broken.load(Ordering::SeqCst) {
                    *seen.failures.lock().unwrap() += 1;
                    return Err(HandlerError::permanent("price feed down"));
                }
                let replay = msg
                    .headers()
                    .get(bus::headers::REPLAY_OF)
                    .map(str::to_owned);
                seen.handled.lock().unwrap().push((event.event_id, replay));
                Ok(())
            }
        });
    bus.subscribe(sub).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_listed_shown_and_replayed_once_each() {
    let server = NatsServer::start().await;
    let url = server.url();
    let bus = service(&server).await;
    let js = js(&server).await;
    let broken = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Seen::default());
    subscribe_risk(&bus, Arc::clone(&broken), Arc::clone(&seen)).await;

    assert_eq!(ok(&url, &["dlq", "list"]).await.trim(), "no dead letters");
    for id in ["p-1", "p-2", "p-3"] {
        ok(&url, &["publish", PRICE_UPDATED, &price(id, "1")]).await;
    }
    wait_for("three dead letters", || {
        let js = js.clone();
        async move {
            let n = stream_messages(&js, "CQC_EVENTS_DLQ").await;
            (n == 3, n)
        }
    })
    .await;

    let listed = json_lines(&ok(&url, &["dlq", "list", "--json"]).await);
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (i, l) in listed.iter().enumerate() {
        assert_eq!(l["topic"], PRICE_UPDATED);
        assert_eq!(l["group"], "risk");
        assert_eq!(l["error_class"], "permanent");
        assert_eq!(l["error"], "price feed down");
        assert_eq!(l["stream_seq"], (i + 1).to_string());
        assert_eq!(l["msg_id"], format!("p-{}", i + 1));
        assert!(l.get("replay_of").is_none());
    }
    let table = ok(&url, &["dlq", "list"]).await;
    assert!(
        table.contains("price feed down") && table.contains("3 dead letter(s)"),
        "{table}"
    );
    // Filters.
    let by = |args: &'static [&'static str]| {
        let url = url.clone();
        async move {
            let mut all = vec!["dlq", "list", "--json"];
            all.extend_from_slice(args);
            json_lines(&ok(&url, &all).await).len()
        }
    };
    assert_eq!(by(&["--group", "other"]).await, 0);
    assert_eq!(
        by(&["--group", "risk", "--error-class", "permanent"]).await,
        3
    );
    assert_eq!(by(&["--error-class", "decode"]).await, 0);
    assert_eq!(by(&["--topic", "cqc.events.v1.*"]).await, 3);
    assert_eq!(by(&["--topic", "cqc.events.v1.asset_created"]).await, 0);
    assert_eq!(by(&["--since", "1h", "--limit", "2"]).await, 2);
    assert_eq!(by(&["--until", "2000-01-01T00:00:00Z"]).await, 0);

    let first = listed[0]["seq"].as_u64().unwrap();
    let shown: Value =
        serde_json::from_str(&ok(&url, &["dlq", "show", &first.to_string()]).await).unwrap();
    assert_eq!(shown["type"], "cqc.events.v1.PriceUpdated");
    assert_eq!(shown["event"]["eventId"], "p-1");
    assert_eq!(shown["headers"]["Bus-Dlq-Group"], "risk");

    let status: Value = serde_json::from_str(&ok(&url, &["status", "--json"]).await).unwrap();
    assert_eq!(status["streams"][0]["messages"], 3);
    assert_eq!(status["streams"][1]["messages"], 3);
    let group = &status["consumers"][0];
    assert_eq!(
        (group["group"].as_str(), group["filter"].as_str()),
        (Some("risk"), Some(PRICE_UPDATED))
    );
    assert_eq!(group["pending"], 0);
    assert_eq!(status["dead_letters"][0]["topic"], PRICE_UPDATED);
    assert_eq!(status["dead_letters"][0]["count"], 3);
    let tables = ok(&url, &["status"]).await;
    assert!(
        tables.contains("CONSUMER GROUPS") && tables.contains("risk"),
        "{tables}"
    );

    // A dry run changes nothing.
    let out = ok(&url, &["dlq", "replay", "--all", "--dry-run"]).await;
    assert!(out.contains("would replay 3, 0 skipped, 0 failed"), "{out}");
    assert_eq!(stream_messages(&js, "CQC_EVENTS_DLQ").await, 3);

    // Fixed: replay them all. Each comes back once, marked, and leaves the dead-letter stream.
    broken.store(false, Ordering::SeqCst);
    let out = ok(&url, &["dlq", "replay", "--all"]).await;
    assert!(out.contains("replayed 3, 0 skipped, 0 failed"), "{out}");
    assert_eq!(
        stream_messages(&js, "CQC_EVENTS_DLQ").await,
        0,
        "replayed dead letters are removed"
    );
    let durable = bus::jetstream::durable_name("risk", PRICE_UPDATED).unwrap();
    let handled = wait_for("the replays handled and acknowledged", || {
        let (js, seen, durable) = (js.clone(), Arc::clone(&seen), durable.clone());
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_stream("CQC_EVENTS")
                .await
                .unwrap()
                .get_consumer(&durable)
                .await
                .unwrap();
            let info = consumer.info().await.unwrap().clone();
            let handled = seen.handled.lock().unwrap().clone();
            let settled = handled.len() >= 3 && info.num_pending == 0 && info.num_ack_pending == 0;
            (settled, (handled, info.num_pending, info.num_ack_pending))
        }
    })
    .await
    .0;
    // Nothing is pending or unacknowledged, so nothing more can come: exactly one each.
    let mut ids: Vec<&str> = handled.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["p-1", "p-2", "p-3"], "{handled:?}");
    for (id, replay_of) in &handled {
        let n: u64 = id.trim_start_matches("p-").parse().unwrap();
        assert_eq!(replay_of.as_deref(), Some(format!("dlq:risk:{n}").as_str()));
    }
    assert_eq!(*seen.failures.lock().unwrap(), 3, "each failed once before");
    assert_eq!(ok(&url, &["dlq", "list"]).await.trim(), "no dead letters");
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_fails_again_is_not_replayed_in_a_loop() {
    let server = NatsServer::start().await;
    let url = server.url();
    let bus = service(&server).await;
    let js = js(&server).await;
    let seen = Arc::new(Seen::default());
    subscribe_risk(&bus, Arc::new(AtomicBool::new(true)), Arc::clone(&seen)).await;

    ok(&url, &["publish", PRICE_UPDATED, &price("p-1", "1")]).await;
    let dlq_has = |n: u64, what: &'static str| {
        let js = js.clone();
        async move {
            wait_for(what, || {
                let js = js.clone();
                async move {
                    let m = stream_messages(&js, "CQC_EVENTS_DLQ").await;
                    (m == n, m)
                }
            })
            .await
        }
    };
    dlq_has(1, "the first dead letter").await;
    let out = ok(&url, &["dlq", "replay", "--all", "--json"]).await;
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["replayed"].as_array().unwrap().len(), 1, "{out}");
    // Still broken: the replay is dead-lettered again, carrying its replay header.
    wait_for("the replay dead-lettered again", || {
        let seen = Arc::clone(&seen);
        async move {
            let n = *seen.failures.lock().unwrap();
            (n == 2, n)
        }
    })
    .await;
    dlq_has(1, "the replay's dead letter").await;
    let listed = json_lines(&ok(&url, &["dlq", "list", "--json"]).await);
    assert_eq!(listed[0]["replay_of"], "dlq:risk:1", "{listed:?}");
    assert_eq!(listed[0]["msg_id"], "replay:dlq:risk:1");

    let out = ok(&url, &["dlq", "replay", "--all"]).await;
    assert!(
        out.contains("replayed 0, 1 skipped, 0 failed") && out.contains("--force"),
        "{out}"
    );
    dlq_has(1, "the skipped dead letter kept").await;
    let out = ok(&url, &["dlq", "replay", "--all", "--force"]).await;
    assert!(out.contains("replayed 1, 0 skipped, 0 failed"), "{out}");
    wait_for("the forced replay delivered", || {
        let seen = Arc::clone(&seen);
        async move {
            let n = *seen.failures.lock().unwrap();
            (n == 3, n)
        }
    })
    .await;
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_whose_topic_has_no_stream_is_kept() {
    let server = NatsServer::start().await;
    let url = server.url();
    let bus = service(&server).await;
    let js = js(&server).await;
    // A dead letter of a topic that no stream captures any more.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "dlq:legacy:9");
    headers.insert("Bus-Dlq-Topic", "legacy.orders.placed");
    headers.insert("Bus-Dlq-Group", "legacy");
    headers.insert("Bus-Dlq-Error-Class", "permanent");
    js.publish_with_headers("dlq.legacy.orders.placed", headers, "x".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let mut cmd = cli(&url);
    cmd.args(["dlq", "replay", "--group", "legacy"]);
    let out = run(cmd).await;
    let (stdout, _) = texts(&out);
    assert!(
        !out.status.success(),
        "a failed replay exits non-zero: {stdout}"
    );
    assert!(
        stdout.contains("no stream captures `legacy.orders.placed`") && stdout.contains("kept"),
        "{stdout}"
    );
    assert!(
        stdout.contains("replayed 0, 0 skipped, 1 failed"),
        "{stdout}"
    );
    assert_eq!(
        stream_messages(&js, "CQC_EVENTS_DLQ").await,
        1,
        "the dead letter is kept"
    );
    // Its payload is not a known event: shown as base64.
    let shown: Value = serde_json::from_str(&ok(&url, &["dlq", "show", "1"]).await).unwrap();
    assert_eq!(shown["payload_base64"], "eA==");
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_schema_given_at_run_time() {
    let server = NatsServer::start().await;
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("shop/v1")).unwrap();
    std::fs::write(
        dir.path().join("shop/v1/events.proto"),
        "syntax = \"proto3\";\npackage shop.events.v1;\nimport \"google/protobuf/timestamp.proto\";\n\
         // An order was placed.\nmessage OrderPlaced {\n  string event_id = 1;\n  int64 cents = 2;\n  \
         google.protobuf.Timestamp at = 3;\n}\n",
    )
    .unwrap();
    let proto = dir.path().to_str().unwrap();
    let config = EventBusConfig::jetstream([server.url()]);
    let mut config = config;
    config.stream.subjects = vec!["cqc.events.v1.>".into(), "shop.>".into()];
    let bus = EventBus::connect(config).await.unwrap();

    let topics = ok(&url, &["topics", "--proto", proto]).await;
    assert!(
        topics.contains("shop.events.v1.order_placed  shop.events.v1.OrderPlaced"),
        "{topics}"
    );
    assert!(
        topics.contains(PRICE_UPDATED),
        "the built-in events are still known"
    );
    let order = r#"{"eventId": "o-1", "cents": "1250", "at": "2024-05-01T12:00:00Z"}"#;
    ok(
        &url,
        &[
            "publish",
            "--proto",
            proto,
            "shop.events.v1.order_placed",
            order,
        ],
    )
    .await;
    let out = ok(
        &url,
        &[
            "tail",
            "shop.>",
            "--from-start",
            "-n",
            "1",
            "--proto",
            proto,
        ],
    )
    .await;
    let line = &json_lines(&out)[0];
    assert_eq!(line["event"]["cents"], "1250");
    assert_eq!(line["event"]["at"], "2024-05-01T12:00:00Z");
    // Without the schema it is shown raw.
    let out = ok(&url, &["tail", "shop.>", "--from-start", "-n", "1"]).await;
    assert!(
        json_lines(&out)[0]["decode_error"]
            .as_str()
            .unwrap()
            .contains("--proto"),
        "{out}"
    );
    bus.close().await.unwrap();
}
