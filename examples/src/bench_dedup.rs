//! What `Nats-Msg-Id` deduplication costs the server: raw `async-nats` pipelined publishes of
//! the same events to the same stream (2-minute duplicate window) with the message id header,
//! without it (the type header only), and with no headers at all. The server's CPU time per
//! event is read from `/proc` when the benchmark started the server itself.
//!
//! Rounds of the three variants take turns going first; the stream is purged between rounds.
//! With the header, the server keeps every id of the window in memory and looks each new one up
//! before storing; without it, a retried publish after a lost acknowledgement is stored twice.

use std::time::Duration;

use async_nats::jetstream::context::Context;
use async_nats::jetstream::message::PublishMessage;
use bus::Event;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;

use crate::bench_common::{Sample, Timer, median_of, run_id, within};
use crate::bench_jetstream::{JsBenchPrice, event};
use crate::report::Figure;

const STREAM: &str = "DEDUP_BENCH";
const SUBJECT: &str = "cqc.dedupevt.v1.js_bench_price";
const EVENTS: u64 = 30_000;
const ROUNDS: usize = 5;
const WINDOW: usize = 1_000;

/// Which headers a variant sends.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// `Nats-Msg-Id` and the type name (what the bus sends).
    MsgId,
    /// The type name only.
    TypeOnly,
    /// No headers.
    Bare,
}

fn message(e: &JsBenchPrice, variant: Variant) -> PublishMessage {
    let m = PublishMessage::build().payload(e.encode_to_vec().into());
    match variant {
        Variant::MsgId => m
            .message_id(&e.event_id)
            .header(bus::headers::EVENT_TYPE, JsBenchPrice::FULL_NAME),
        Variant::TypeOnly => m.header(bus::headers::EVENT_TYPE, JsBenchPrice::FULL_NAME),
        Variant::Bare => m,
    }
}

/// Publishes `messages` with up to 1 000 acknowledgements in flight.
pub async fn pipelined(js: &Context, subject: &str, messages: Vec<PublishMessage>) {
    let mut acks = FuturesUnordered::new();
    for m in messages {
        if acks.len() >= WINDOW {
            let ack: Option<Result<_, _>> = acks.next().await;
            ack.expect("an ack").expect("publish ack");
        }
        let ack = js
            .send_publish(subject.to_owned(), m)
            .await
            .expect("publish");
        acks.push(std::future::IntoFuture::into_future(ack));
    }
    while let Some(a) = acks.next().await {
        a.expect("publish ack");
    }
}

async fn round(js: &Context, run: &str, n: usize, variant: Variant, pid: Option<u32>) -> Sample {
    let _: serde_json::Value = js
        .request(format!("STREAM.PURGE.{STREAM}"), &serde_json::json!({}))
        .await
        .expect("purging the stream");
    let messages = (0..EVENTS)
        .map(|s| message(&event(run, n, s, 0), variant))
        .collect();
    let t = Timer::with_server(pid);
    within(
        format!("{EVENTS} acknowledgements of {variant:?} publishes"),
        pipelined(js, SUBJECT, messages),
    )
    .await;
    t.finish(EVENTS)
}

/// Runs the deduplication benchmark against `url` or a `nats-server` it starts (the server's
/// CPU is only measured then), and prints the figures.
///
/// # Panics
///
/// When the server cannot be started or reached, or a phase does not finish within
/// [`PHASE_TIMEOUT`](crate::bench_common::PHASE_TIMEOUT).
pub async fn run(json: bool, url: Option<String>) -> Vec<Figure> {
    let server = match url {
        Some(_) => None,
        None => Some(bus::testing::NatsServer::start().await),
    };
    let pid = server.as_ref().and_then(bus::testing::NatsServer::pid);
    let url = url.unwrap_or_else(|| server.as_ref().expect("started").url());
    let client = async_nats::connect(url.as_str())
        .await
        .expect("connecting async-nats");
    let js = async_nats::jetstream::new(client.clone());
    let created: serde_json::Value = js
        .request(
            format!("STREAM.CREATE.{STREAM}"),
            &serde_json::json!({
                "name": STREAM, "subjects": ["cqc.dedupevt.v1.>"], "retention": "limits",
                "storage": "file", "num_replicas": 1,
                "duplicate_window": Duration::from_secs(120).as_nanos() as u64,
                "discard": "old",
            }),
        )
        .await
        .expect("creating the stream");
    assert!(
        created.get("error").is_none() || created.pointer("/error/err_code") == Some(&10058.into()),
        "creating stream {STREAM}: {created}"
    );
    let run = run_id();
    let variants = [Variant::MsgId, Variant::TypeOnly, Variant::Bare];
    let mut samples: [Vec<Sample>; 3] = Default::default();
    let mut n = 0;
    for r in 0..ROUNDS {
        for i in 0..variants.len() {
            let v = (i + r) % variants.len();
            n += 1;
            samples[v].push(round(&js, &run, n, variants[v], pid).await);
        }
    }
    let rate = |v: usize| median_of(&samples[v], |s| s.rate);
    let server_cpu = |v: usize| median_of(&samples[v], |s| s.server_cpu_us);
    let mut figures = vec![
        Figure::new("dedup.publish.msg_id", rate(0), "events/s"),
        Figure::against("dedup.publish.type_only", rate(1), "events/s", rate(0)),
        Figure::against("dedup.publish.no_headers", rate(2), "events/s", rate(0)),
    ];
    if pid.is_some() {
        figures.extend([
            Figure::new("dedup.server_cpu.msg_id", server_cpu(0), "us/event"),
            Figure::against(
                "dedup.server_cpu.type_only",
                server_cpu(1),
                "us/event",
                server_cpu(0),
            ),
            Figure::against(
                "dedup.server_cpu.no_headers",
                server_cpu(2),
                "us/event",
                server_cpu(0),
            ),
        ]);
    }
    for f in &figures {
        f.print(json);
    }
    let _ = js
        .request::<_, _, serde_json::Value>(
            format!("STREAM.DELETE.{STREAM}"),
            &serde_json::json!({}),
        )
        .await;
    let _ = client.drain().await;
    drop(server);
    figures
}
