//! JetStream bad input: each mistake gives its clear error, and nothing is lost or reset.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bus::config::Storage;
use bus::testing::NatsServer;
use bus::{Error, Event, EventBus, EventBusConfig, HandlerError, Headers, Subscription};
use tests::Recorder;
use tests::events::Ping;
use tests::nats::{api, stream_info};

const WAIT: Duration = Duration::from_secs(20);

fn config(server: &NatsServer) -> EventBusConfig {
    let mut c = server.bus_config();
    c.consumer_name = "bad-input".into();
    c
}

/// Subscribes a recorder of `Ping` sequence numbers.
async fn record_pings(bus: &EventBus, name: &str) -> Arc<Recorder<u64>> {
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

/// Connects with `c`, which the server must accept (`what` says why), and sees one event
/// published and handled.
async fn connects_and_delivers(c: EventBusConfig, what: &str) {
    let bus = EventBus::connect(c)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let rec = record_pings(&bus, "authed").await;
    bus.publish(&Ping::new(1)).await.unwrap();
    rec.wait_for(1, WAIT).await;
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_credentials_fail_at_connect() {
    let server = NatsServer::builder().user("svc", "right").start().await;

    let mut c = config(&server);
    c.auth.user = Some("svc".into());
    c.auth.password = Some("wrong".into());
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("authorization violation"), "{text}");
    assert!(text.contains("auth"), "says what to check: {text}");
    assert!(text.contains(&server.url()), "names the server: {text}");

    let err = EventBus::connect(config(&server)).await.unwrap_err();
    assert!(
        matches!(err, Error::Connect { .. }),
        "no credentials: {err}"
    );

    let mut c = config(&server);
    c.auth.user = Some("svc".into());
    c.auth.password = Some("right".into());
    connects_and_delivers(c, "right credentials connect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth() {
    let server = NatsServer::builder().token("s3cret-token").start().await;
    let mut c = config(&server);
    c.auth.token = Some("not-it".into());
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(err.to_string().contains("authorization violation"), "{err}");
    let mut c = config(&server);
    c.auth.token = Some("s3cret-token".into());
    let bus = EventBus::connect(c).await.expect("right token connects");
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_auth() {
    let user = nkeys::KeyPair::new_user();
    let server = NatsServer::builder()
        .config(&format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}",
            user.public_key()
        ))
        .start()
        .await;

    let stranger = nkeys::KeyPair::new_user();
    let mut c = config(&server);
    c.auth.nkey = Some(stranger.seed().unwrap());
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains("BUS_NKEY"),
        "says what to check: {err}"
    );

    let mut c = config(&server);
    c.auth.nkey = Some("SUNOTASEED".into());
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(
        matches!(err, Error::Connect { .. }),
        "a malformed seed: {err}"
    );

    let mut c = config(&server);
    c.auth.nkey = Some(user.seed().unwrap());
    connects_and_delivers(c, "the registered nkey connects").await;
}

/// A JWT as `nsc` would issue it: header and claims signed by `issuer` (nkeys, ed25519).
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: &serde_json::Value) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("{subject}{iat}"), "iat": iat, "iss": issuer.public_key(),
        "name": name, "sub": subject, "nats": nats,
    });
    let signed = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64.encode(signature))
}

/// A `.creds` file for a user of `account`, in the layout `nsc` writes.
fn creds_file(dir: &std::path::Path, account: &nkeys::KeyPair) -> std::path::PathBuf {
    let user = nkeys::KeyPair::new_user();
    let token = jwt(
        account,
        &user.public_key(),
        "bus-test-user",
        &serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        }),
    );
    let path = dir.join(format!("{}.creds", &user.public_key()[..8]));
    std::fs::write(
        &path,
        format!(
            "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    path
}

/// Decentralized auth: an operator, an account with JetStream, users with `.creds` files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_auth() {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "bus-test-operator",
        &serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "bus-test-account",
        &serde_json::json!({
            "limits": {
                "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                "wildcards": true, "conn": -1, "leaf": -1,
                "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
            },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account", "version": 2,
        }),
    );
    // JetStream needs a system account in operator mode.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        &serde_json::json!({ "type": "account", "version": 2 }),
    );
    let server = NatsServer::builder()
        .config(&format!(
            "operator: \"{operator_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{ {sys}: \"{system_jwt}\", {acc}: \"{account_jwt}\" }}\n",
            sys = system.public_key(),
            acc = account.public_key(),
        ))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();

    // A user issued by an account the server does not know.
    let mut c = config(&server);
    c.auth.credentials_file = Some(creds_file(dir.path(), &nkeys::KeyPair::new_account()));
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains("credentials"),
        "says what to check: {err}"
    );

    let mut c = config(&server);
    c.auth.credentials_file = Some(dir.path().join("missing.creds"));
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(
        err.to_string().contains("auth.credentials_file"),
        "a missing file says which setting: {err}"
    );

    let mut c = config(&server);
    c.auth.credentials_file = Some(creds_file(dir.path(), &account));
    connects_and_delivers(c, "a user of the known account connects").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_at_connect() {
    let port = bus::testing::free_port();
    let c = EventBusConfig::jetstream([format!("nats://127.0.0.1:{port}")]).with_cqc_conventions();
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("no server reachable"), "{err}");
    let c = EventBusConfig::jetstream(["nats://exa mple:4222"]);
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_no_stream_captures_is_an_error_and_nothing_is_lost() {
    let server = NatsServer::start().await;
    let bus = EventBus::connect(config(&server)).await.unwrap();
    let rec = record_pings(&bus, "survivor").await;
    bus.publish(&Ping::new(1)).await.unwrap();
    let err = bus
        .publish_raw("billing.invoices.created", &b"x"[..], Headers::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoStream { .. }), "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains("billing.invoices.created") && text.contains("stream.subjects"),
        "{text}"
    );
    let err = bus
        .subscribe(
            Subscription::raw("outside", "billing.>")
                .unwrap()
                .handler(|_: bus::RawMessage| async { Ok::<_, HandlerError>(()) }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoStream { .. }), "{err}");
    // A filter wider than the stream's subjects is not captured either.
    let err = bus
        .subscribe(
            Subscription::raw("too_wide", "cqc.>")
                .unwrap()
                .handler(|_: bus::RawMessage| async { Ok::<_, HandlerError>(()) }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoStream { .. }), "{err}");
    bus.publish(&Ping::new(2)).await.unwrap();
    rec.wait_for(2, WAIT).await;
    assert_eq!(
        rec.items().into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2])
    );
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_over_the_server_max_is_refused_before_sending() {
    // A server with a small `max_payload`: a quarter of it (1 KiB) is kept for dead letters.
    let server = NatsServer::builder()
        .config("max_payload: 4096\n")
        .start()
        .await;
    let bus = EventBus::connect(config(&server)).await.unwrap();
    let rec = record_pings(&bus, "sizes").await;
    let mut big = Ping::new(1);
    big.note = "x".repeat(5000);
    let err = bus.publish(&big).await.unwrap_err();
    match &err {
        Error::PayloadTooLarge { size, max, topic } => {
            assert_eq!(*max, 3072);
            assert!(*size > 5000);
            assert_eq!(topic, Ping::TOPIC.as_str());
        }
        other => panic!("expected PayloadTooLarge, got {other}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("max_payload"), "{err}");
    // A batch stops at the oversize event; the ones before it are stored.
    let mut batch: Vec<Ping> = (2..5).map(Ping::new).collect();
    batch.push(big.clone());
    let err = bus.publish_batch(&batch).await.unwrap_err();
    match &err {
        Error::PartialBatch { source, failed, .. } => {
            assert_eq!(*failed, 3);
            assert!(matches!(**source, Error::PayloadTooLarge { .. }), "{err}");
        }
        other => panic!("expected PartialBatch, got {other}"),
    }
    let mut fits = Ping::new(5);
    fits.note = "y".repeat(2900);
    bus.publish(&fits).await.unwrap();
    rec.wait_for(4, WAIT).await;
    assert_eq!(
        rec.items().into_iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([2, 3, 4, 5])
    );
    bus.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_stream_with_other_settings_is_an_error_and_is_not_reset() {
    let server = NatsServer::start().await;
    let url = server.url();
    // Someone made the stream in memory with a 1-minute duplicate window and another subject.
    let created = api(
        &url,
        "STREAM.CREATE.CQC_EVENTS",
        serde_json::json!({
            "name": "CQC_EVENTS", "subjects": ["legacy.events.>"], "retention": "limits",
            "storage": "memory", "num_replicas": 1, "duplicate_window": 60_000_000_000u64,
        }),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let client = async_nats::connect(url.as_str()).await.unwrap();
    async_nats::jetstream::new(client.clone())
        .publish("legacy.events.one", "kept".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let err = EventBus::connect(config(&server)).await.unwrap_err();
    match &err {
        Error::StreamMismatch {
            stream,
            setting,
            variable,
            existing,
            configured,
        } => {
            assert_eq!(stream, "CQC_EVENTS");
            assert_eq!(*setting, "stream.storage");
            assert_eq!(*variable, "BUS_STREAM_STORAGE");
            assert_eq!(existing, "memory");
            assert_eq!(configured, "file");
        }
        other => panic!("expected StreamMismatch, got {other}"),
    }
    assert!(err.to_string().contains("never resets"), "{err}");

    let mut c = config(&server);
    c.stream.storage = Storage::Memory;
    let err = EventBus::connect(c.clone()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::StreamMismatch {
                setting: "stream.duplicate_window",
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("1m") && text.contains("2m"),
        "names both values: {text}"
    );

    // With matching settings the bus adds its subjects and keeps everything else.
    c.stream.duplicate_window = Duration::from_secs(60);
    let bus = EventBus::connect(c)
        .await
        .expect("matching settings connect");
    let info = stream_info(&url, "CQC_EVENTS").await;
    let subjects: Vec<&str> = info["config"]["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["legacy.events.>", "cqc.events.v1.>"]);
    assert_eq!(info["config"]["storage"], "memory");
    assert_eq!(info["state"]["messages"], 1, "the stored message survived");
    let rec = record_pings(&bus, "after_update").await;
    bus.publish(&Ping::new(1)).await.unwrap();
    rec.wait_for(1, WAIT).await;
    bus.close().await.unwrap();
    client.drain().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_stream_with_other_retention_is_an_error() {
    let server = NatsServer::start().await;
    let created = api(
        &server.url(),
        "STREAM.CREATE.CQC_EVENTS_DLQ",
        serde_json::json!({
            "name": "CQC_EVENTS_DLQ", "subjects": ["dlq.>"], "retention": "workqueue",
            "storage": "file", "num_replicas": 1,
        }),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let err = EventBus::connect(config(&server)).await.unwrap_err();
    match &err {
        Error::StreamMismatch {
            stream,
            setting,
            existing,
            ..
        } => {
            assert_eq!(stream, "CQC_EVENTS_DLQ");
            assert_eq!(*setting, "dead_letter.stream_name");
            assert!(existing.contains("workqueue"), "{existing}");
        }
        other => panic!("expected StreamMismatch, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_without_a_cluster_say_so() {
    let server = NatsServer::start().await;
    let mut c = config(&server);
    c.stream.replicas = 3;
    let err = EventBus::connect(c).await.unwrap_err();
    assert!(err.to_string().contains("stream.replicas"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_that_cannot_name_a_consumer_are_errors_and_valid_ones_name_it() {
    let server = NatsServer::start().await;
    let mut c = config(&server);
    c.consumer_name = String::new();
    let bus = EventBus::connect(c).await.unwrap();
    let noop = |_: Ping| async { Ok::<_, HandlerError>(()) };

    // An empty consumer name and an empty handler name leave no group.
    let err = bus
        .subscribe(Subscription::new("", Ping::TOPIC).handler(noop))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidGroup { .. }), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    for bad in ["line\nbreak", "team.billing", "a b", "a*"] {
        let err = bus
            .subscribe(Subscription::new("h", Ping::TOPIC).group(bad).handler(noop))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidGroup { .. }), "{bad:?}: {err}");
        assert!(err.to_string().contains("letters, digits"), "{err}");
    }

    // Two groups, two consumers, each named by its group and a hash of (group, filter).
    let billing = record_pings_group(&bus, "team_billing").await;
    let audit = record_pings_group(&bus, "team-audit").await;
    bus.publish(&Ping::new(1)).await.unwrap();
    billing.wait_for(1, WAIT).await;
    audit.wait_for(1, WAIT).await;
    let names = consumer_names(&server.url(), "CQC_EVENTS").await;
    assert_eq!(
        names,
        [
            bus::jetstream::durable_name("team-audit", Ping::TOPIC.as_str()).unwrap(),
            bus::jetstream::durable_name("team_billing", Ping::TOPIC.as_str()).unwrap(),
        ]
    );
    bus.close().await.unwrap();
}

async fn record_pings_group(bus: &EventBus, group: &str) -> Arc<Recorder<u64>> {
    let rec = Recorder::new();
    let r = Arc::clone(&rec);
    bus.subscribe(
        Subscription::new("h", Ping::TOPIC)
            .group(group)
            .handler(move |e: Ping| {
                r.push(e.seq);
                async { Ok::<_, HandlerError>(()) }
            }),
    )
    .await
    .unwrap();
    rec
}

async fn consumer_names(url: &str, stream: &str) -> Vec<String> {
    let reply = api(
        url,
        &format!("CONSUMER.NAMES.{stream}"),
        serde_json::json!({}),
    )
    .await;
    let mut names: Vec<String> = reply["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}
