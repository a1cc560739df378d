//! The `metrics_service` example on JetStream, scraped on `/metrics` while it runs with
//! failures: every series of `bus::telemetry` is there with the right values. And the Grafana
//! dashboard beside it uses only those series, all of them.

use std::process::Stdio;
use std::time::Duration;

use bus::telemetry::*;
use bus::testing::{NatsServer, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;

/// `GET /metrics` over plain HTTP/1.0; `None` while nothing listens yet.
async fn scrape(port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// The value of the sample of `name` whose labels include `labels`.
fn value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, v)| v.parse().ok())
}

/// A series (name, labels it must have) and the value it must show.
type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_is_scraped_with_its_value() {
    const COUNT: f64 = 20.0;
    let server = NatsServer::start().await;
    let port = free_port();
    let mut service = Command::new(env!("CARGO_BIN_EXE_metrics_service"))
        .args(["--count", "20", "--listen", &format!("127.0.0.1:{port}")])
        .env("BUS_BACKEND", "jetstream")
        .env("BUS_SERVERS", server.url())
        .env("BUS_BACKOFF", "100ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning the metrics_service example");

    let topic = ("topic", "cqc.events.v1.price_updated");
    let group = ("group", "metrics-example-prices");
    // Of 20 prices, 2 have no price (dead-lettered at once) and 2 fail their first delivery.
    let expected: Vec<Sample<'_>> = vec![
        (PUBLISH_TOTAL, vec![topic, ("outcome", "ok")], COUNT),
        ("bus_publish_duration_seconds_count", vec![topic], COUNT),
        (DELIVERIES_TOTAL, vec![topic, group], COUNT + 2.0),
        (ACKS_TOTAL, vec![topic, group], COUNT - 2.0),
        (
            REDELIVERIES_TOTAL,
            vec![topic, group, ("attempt", "1")],
            2.0,
        ),
        (
            DEAD_LETTERS_TOTAL,
            vec![topic, group, ("class", "permanent")],
            2.0,
        ),
        (
            "bus_delivery_duration_seconds_count",
            vec![group, ("outcome", "ack")],
            18.0,
        ),
        (
            "bus_delivery_duration_seconds_count",
            vec![group, ("outcome", "redeliver")],
            2.0,
        ),
        (
            "bus_delivery_duration_seconds_count",
            vec![group, ("outcome", "dead_letter")],
            2.0,
        ),
        (HANDLERS_IN_FLIGHT, vec![topic, group], 0.0),
        (CONSUMER_PENDING, vec![("stream", "CQC_EVENTS"), group], 0.0),
        (
            CONSUMER_ACK_PENDING,
            vec![("stream", "CQC_EVENTS"), group],
            0.0,
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut body = String::new();
    loop {
        if let Some(b) = scrape(port).await {
            body = b;
        }
        let missing: Vec<_> = expected
            .iter()
            .filter(|(name, labels, want)| value(&body, name, labels) != Some(*want))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not scraped with the right values: {missing:?}\nlast scrape:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !body.contains("event_id") && !body.contains("metrics-example-1"),
        "no event ids in labels"
    );

    let pid = service.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), service.wait())
        .await
        .expect("the example exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// The series a PromQL expression names (`_bucket`, `_sum` and `_count` of histograms folded).
fn series_in(expr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("bus_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        found.push(base.to_owned());
    }
    found
}

#[test]
fn the_dashboard_charts_every_documented_series_and_no_other() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/bus-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut charted: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .flat_map(|t| series_in(t["expr"].as_str().unwrap()))
        .collect();
    charted.sort();
    charted.dedup();
    let mut documented = vec![
        PUBLISH_TOTAL,
        PUBLISH_DURATION,
        DELIVERIES_TOTAL,
        ACKS_TOTAL,
        REDELIVERIES_TOTAL,
        DEAD_LETTERS_TOTAL,
        DELIVERY_DURATION,
        HANDLERS_IN_FLIGHT,
        CONSUMER_PENDING,
        CONSUMER_ACK_PENDING,
    ];
    documented.sort_unstable();
    assert_eq!(charted, documented);
}
