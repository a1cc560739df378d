//! JetStream benchmark: the bus beside raw `async-nats` doing the same work against the same
//! server in the same run.
//!
//! - `jetstream.publish.awaited`: publish one event, wait for the stream's ack, repeat.
//! - `jetstream.publish.pipelined`: the bus's `publish_batch` (1 000 acks in flight) beside raw
//!   `send_publish` with a `FuturesUnordered` of ack futures bounded at 1 000.
//! - `jetstream.consume`: events already in the stream, consumed through a typed handler that
//!   acks, beside a raw pull consumer (batches of 1 000) that decodes and acks each message.
//! - `jetstream.latency.p50` / `.p99`: publish-to-handler latency at a paced 2 000 events/s
//!   (median over 3 runs of 2 s each side).
//!
//! Both sides encode the same protobuf event (about 130 bytes) and send the same headers
//! (`Nats-Msg-Id`, the type name), to streams with the same settings (file storage, Limits
//! retention, 2-minute duplicate window). Each throughput figure is the median of 7 rounds,
//! raw and bus taking turns to go first, streams purged and consumers deleted between them, so neither side
//! works against a bigger stream or more consumers than the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::Context;
use async_nats::jetstream::message::PublishMessage;
use bus::testing::NatsServer;
use bus::{Event, EventBus, EventBusConfig, HandlerError, Subscription, Topic};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prost::Message;
use tokio::sync::Mutex;

use crate::bench_common::{Counter, Sample, Timer, median, median_of, run_id, within};
use crate::report::Figure;

#[cfg(feature = "compare-ruststream")]
use crate::bench_ruststream::Peer;

/// Without the `compare-ruststream` feature there is no peer to run.
#[cfg(not(feature = "compare-ruststream"))]
enum Peer {}

#[cfg(not(feature = "compare-ruststream"))]
impl Peer {
    async fn connect(wanted: bool, _: &str, _: &Context) -> Option<Peer> {
        assert!(
            !wanted,
            "--compare-ruststream: this bench was built without the peer; build it with \
             `--features compare-ruststream`"
        );
        None
    }
    async fn pipelined(&self, _: &str, _: usize, _: u64) -> Sample {
        match *self {}
    }
    async fn consume(&self, _: &Context, _: &str, _: usize, _: u64) -> Sample {
        match *self {}
    }
    async fn purge(_: &Context) {}
    async fn close(self) {}
}

/// A price update shaped like `cqc.events.v1.PriceUpdated`, with a send time for latency.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JsBenchPrice {
    /// Event id (becomes `Nats-Msg-Id`).
    #[prost(string, tag = "1")]
    pub event_id: String,
    /// Market.
    #[prost(string, tag = "2")]
    pub market_id: String,
    /// Venue.
    #[prost(string, tag = "3")]
    pub venue_id: String,
    /// Price.
    #[prost(double, tag = "4")]
    pub value: f64,
    /// Previous price.
    #[prost(double, tag = "5")]
    pub previous_value: f64,
    /// Sequence.
    #[prost(uint64, tag = "6")]
    pub seq: u64,
    /// Source.
    #[prost(string, tag = "7")]
    pub source: String,
    /// Nanoseconds since the benchmark's start when it was published (latency runs).
    #[prost(uint64, tag = "8")]
    pub sent_nanos: u64,
    /// Filler bytes for the payload-size curve (empty, so not encoded, elsewhere). A `Vec<u8>`,
    /// as `bus-build` generates for `bytes` fields, so both sides copy it when decoding.
    #[prost(bytes = "vec", tag = "9")]
    pub padding: Vec<u8>,
}

impl Event for JsBenchPrice {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.js_bench_price");
    const EVENT_TYPE: &'static str = "js_bench_price";
    const FULL_NAME: &'static str = "cqc.events.v1.JsBenchPrice";
    fn event_id(&self) -> Option<&str> {
        Some(self.event_id.as_str()).filter(|s| !s.is_empty())
    }
}

const RAW_STREAM: &str = "RAW_BENCH";
/// Same length and number of tokens as the bus's topic, so the server's work is the same.
const RAW_SUBJECT: &str = "cqc.rawevt.v1.js_bench_price";
const AWAITED: u64 = 2_000;
const PIPELINED: u64 = 30_000;
const CONSUMED: u64 = 30_000;
const ROUNDS: usize = 7;
const WINDOW: usize = 1_000;
const RATE: u64 = 2_000;
const LATENCY_RUN: Duration = Duration::from_secs(2);
const LATENCY_ROUNDS: usize = 3;

/// An event of `round` with a message id unique to this process (`run` is this run's id), so a
/// run never repeats an id a previous run left in the server's duplicate window: a repeated id is
/// acknowledged as a duplicate and never stored, and a consumer waiting for it waits forever.
pub fn event(run: &str, round: usize, seq: u64, sent_nanos: u64) -> JsBenchPrice {
    JsBenchPrice {
        event_id: format!("evt-{run}-{round}-{seq:012}"),
        market_id: "BTC-USD".into(),
        venue_id: "binance".into(),
        value: 64_000.0 + seq as f64,
        previous_value: 63_999.5 + seq as f64,
        seq,
        source: "bench".into(),
        sent_nanos,
        padding: Vec::new(),
    }
}

/// The raw side's publish: the same encoding and headers as the bus.
fn raw_message(e: &JsBenchPrice) -> PublishMessage {
    PublishMessage::build()
        .payload(e.encode_to_vec().into())
        .message_id(&e.event_id)
        .header(bus::headers::EVENT_TYPE, JsBenchPrice::FULL_NAME)
}

struct Bench {
    bus: EventBus,
    js: Context,
    client: async_nats::Client,
    config: EventBusConfig,
    start: Instant,
    /// Numbers the paced runs, so their event ids never repeat (and are never deduplicated).
    paced_runs: AtomicU64,
    /// This run's id, part of every event id (see [`event`]).
    run: String,
}

impl Bench {
    fn nanos(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    async fn purge(&self) {
        for stream in [RAW_STREAM, self.config.stream_name.as_str()] {
            let _: serde_json::Value = self
                .js
                .request(format!("STREAM.PURGE.{stream}"), &serde_json::json!({}))
                .await
                .expect("purging a stream");
        }
    }

    async fn raw_awaited(&self, round: usize) -> Sample {
        let t = Timer::start();
        for seq in 0..AWAITED {
            let e = event(&self.run, round, seq, 0);
            self.js
                .send_publish(RAW_SUBJECT, raw_message(&e))
                .await
                .expect("raw publish")
                .await
                .expect("raw ack");
        }
        t.finish(AWAITED)
    }

    async fn bus_awaited(&self, round: usize) -> Sample {
        let t = Timer::start();
        for seq in 0..AWAITED {
            self.bus
                .publish(&event(&self.run, round, seq, 0))
                .await
                .expect("bus publish");
        }
        t.finish(AWAITED)
    }

    async fn raw_pipelined(&self, round: usize, n: u64) -> Sample {
        let events: Vec<JsBenchPrice> = (0..n).map(|s| event(&self.run, round, s, 0)).collect();
        let t = Timer::start();
        let mut acks = FuturesUnordered::<
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<_, _>> + Send>>,
        >::new();
        for e in &events {
            if acks.len() >= WINDOW {
                acks.next().await.expect("an ack").expect("raw ack");
            }
            let ack = self
                .js
                .send_publish(RAW_SUBJECT, raw_message(e))
                .await
                .expect("raw publish");
            acks.push(std::future::IntoFuture::into_future(ack));
        }
        while let Some(a) = acks.next().await {
            a.expect("raw ack");
        }
        t.finish(n)
    }

    async fn bus_pipelined(&self, round: usize, n: u64) -> Sample {
        let events: Vec<JsBenchPrice> = (0..n).map(|s| event(&self.run, round, s, 0)).collect();
        let t = Timer::start();
        self.bus.publish_batch(&events).await.expect("bus batch");
        t.finish(n)
    }

    async fn raw_consume(&self, round: usize) -> Sample {
        self.raw_pipelined(round + 100, CONSUMED).await;
        let durable = format!("raw_consume_{round}");
        raw_consume(&self.js, RAW_STREAM, &durable, "", CONSUMED).await
    }

    async fn bus_consume(&self, round: usize) -> Sample {
        let group = format!("bench-consume-{round}");
        let sub = |count: Arc<Counter>| {
            Subscription::new("consume", JsBenchPrice::TOPIC)
                .group(group.clone())
                .concurrency(256)
                .max_ack_pending(4096)
                .handler(move |e: JsBenchPrice| {
                    std::hint::black_box(e);
                    count.hit();
                    async { Ok::<_, HandlerError>(()) }
                })
        };
        // A consumer left by an interrupted run would start where that run stopped.
        self.delete_consumer(&group, "consume").await;
        // Create the durable consumer first (it starts at new events), then fill the stream.
        let first = EventBus::connect(self.config.clone()).await.expect("bus");
        first
            .subscribe(sub(Counter::untargeted()))
            .await
            .expect("subscribe");
        first.close().await.expect("close");
        self.bus_pipelined(round + 100, CONSUMED).await;
        let count = Counter::new(CONSUMED);
        let consumer = EventBus::connect(self.config.clone()).await.expect("bus");
        let t = Timer::start();
        consumer
            .subscribe(sub(Arc::clone(&count)))
            .await
            .expect("subscribe");
        count
            .wait(&format!(
                "the bus group `{group}` to consume {CONSUMED} events"
            ))
            .await;
        let rate = t.finish(CONSUMED);
        consumer.close().await.expect("close");
        // A consumer left behind would make the server do more work for every later publish.
        self.delete_consumer(&group, "consume").await;
        rate
    }

    /// Deletes the bus's durable consumer of `group` (or of handler `name` with no group).
    async fn delete_consumer(&self, group: &str, name: &str) {
        let group = if group.is_empty() {
            format!("{}-{name}", self.config.consumer_name)
        } else {
            group.to_owned()
        };
        let durable = bus::jetstream::durable_name(&group, JsBenchPrice::TOPIC.as_str())
            .expect("valid group");
        // An error reply (no such consumer) is what a first run gets; only a lost request fails.
        let _: serde_json::Value = self
            .js
            .request(
                format!("CONSUMER.DELETE.{}.{durable}", self.config.stream_name),
                &serde_json::json!({}),
            )
            .await
            .expect("deleting a consumer");
    }

    /// Publishes at `RATE` for `LATENCY_RUN` through `publish`, with latencies recorded by the
    /// consumer into `samples`; returns (p50, p99) in microseconds.
    async fn paced<F, Fut>(&self, samples: &Arc<Mutex<Vec<u64>>>, publish: F) -> (f64, f64)
    where
        F: Fn(JsBenchPrice) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let n = RATE * LATENCY_RUN.as_secs();
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / RATE));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let run = 1000 + self.paced_runs.fetch_add(1, Ordering::Relaxed) as usize;
        for seq in 0..n {
            tick.tick().await;
            publish(event(&self.run, run, seq, self.nanos())).await;
        }
        within(
            format_args!("{n} paced events to reach the latency handler"),
            async {
                while samples.lock().await.len() < n as usize {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        let mut s = samples.lock().await.clone();
        s.sort_unstable();
        let at = |q: f64| s[((s.len() as f64 * q) as usize).min(s.len() - 1)] as f64 / 1000.0;
        (at(0.50), at(0.99))
    }

    async fn raw_latency(self: &Arc<Self>) -> (f64, f64) {
        self.purge().await;
        let stream = self.js.get_stream(RAW_STREAM).await.expect("raw stream");
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some("raw_latency".into()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::New,
                max_ack_pending: 4096,
                ..Default::default()
            })
            .await
            .expect("raw consumer");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let this = Arc::clone(self);
        let s = Arc::clone(&samples);
        let reader = tokio::spawn(async move {
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(1000)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await
                .expect("raw pull");
            while let Some(Ok(m)) = messages.next().await {
                let e = JsBenchPrice::decode(m.payload.clone()).expect("decodes");
                s.lock()
                    .await
                    .push(this.nanos().saturating_sub(e.sent_nanos));
                m.ack().await.expect("raw ack");
            }
        });
        let result = self
            .paced(&samples, |e| async move {
                self.js
                    .send_publish(RAW_SUBJECT, raw_message(&e))
                    .await
                    .expect("raw publish")
                    .await
                    .expect("raw ack");
            })
            .await;
        reader.abort();
        let _ = stream.delete_consumer("raw_latency").await;
        result
    }

    async fn bus_latency(self: &Arc<Self>) -> (f64, f64) {
        self.purge().await;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let consumer = EventBus::connect(self.config.clone()).await.expect("bus");
        let this = Arc::clone(self);
        let s = Arc::clone(&samples);
        consumer
            .subscribe(
                Subscription::new("latency", JsBenchPrice::TOPIC)
                    .concurrency(256)
                    .max_ack_pending(4096)
                    .handler(move |e: JsBenchPrice| {
                        let lat = this.nanos().saturating_sub(e.sent_nanos);
                        let s = Arc::clone(&s);
                        async move {
                            s.lock().await.push(lat);
                            Ok::<_, HandlerError>(())
                        }
                    }),
            )
            .await
            .expect("subscribe");
        let result = self
            .paced(&samples, |e| async move {
                self.bus.publish(&e).await.expect("bus publish");
            })
            .await;
        consumer.close().await.expect("close");
        self.delete_consumer("", "latency").await;
        result
    }
}

/// Runs the JetStream benchmark against `url`, or against a `nats-server` it starts, and prints
/// the figures (a table, or one JSON object per line with `json`). With `compare_ruststream`
/// (feature `compare-ruststream`), RustStream-nats 0.7 takes its turn in every throughput round
/// too, and the figures include the bus against it.
///
/// # Panics
///
/// When the server cannot be started or reached, or an operation fails: it is a benchmark.
pub async fn run(json: bool, url: Option<String>, compare_ruststream: bool) {
    let server = match url {
        Some(_) => None,
        None => Some(NatsServer::start().await),
    };
    let url = url.unwrap_or_else(|| server.as_ref().expect("started").url());
    let mut config = EventBusConfig::jetstream([url.clone()]).with_cqc_conventions();
    config.consumer_name = "bench".into();
    config.publish_timeout = Duration::from_secs(30);
    let bus = EventBus::connect(config.clone())
        .await
        .expect("connecting the bus");
    let client = async_nats::connect(url.as_str())
        .await
        .expect("connecting raw async-nats");
    let js = async_nats::jetstream::new(client.clone());
    // The same stream settings the bus uses for its events stream.
    let created: serde_json::Value = js
        .request(
            format!("STREAM.CREATE.{RAW_STREAM}"),
            &serde_json::json!({
                "name": RAW_STREAM, "subjects": ["cqc.rawevt.v1.>"], "retention": "limits",
                "storage": "file", "num_replicas": 1, "max_age": 0,
                "duplicate_window": 120_000_000_000u64, "discard": "old", "max_msgs": -1,
                "max_bytes": -1, "max_msg_size": -1, "max_consumers": -1,
                "max_msgs_per_subject": -1,
            }),
        )
        .await
        .expect("raw stream");
    assert!(
        created.get("error").is_none() || created.pointer("/error/err_code") == Some(&10058.into()),
        "creating the raw stream: {created}"
    );
    let bench = Arc::new(Bench {
        bus,
        js,
        client,
        config,
        start: Instant::now(),
        paced_runs: AtomicU64::new(0),
        run: run_id(),
    });

    let peer = Peer::connect(compare_ruststream, &url, &bench.js).await;
    let (mut ra, mut ba, mut rp, mut bp, mut rc, mut bc) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut pp, mut pc) = (vec![], vec![]);
    let sides = if peer.is_some() { 3 } else { 2 };
    for round in 0..ROUNDS {
        // Rotate which side goes first, so none always runs on a server still busy with
        // another's writes.
        for i in 0..sides {
            let side = (i + round) % sides;
            bench.purge().await;
            if side == 2 {
                let peer = peer.as_ref().expect("a peer");
                pp.push(peer.pipelined(&bench.run, round, PIPELINED).await);
                Peer::purge(&bench.js).await;
                pc.push(
                    peer.consume(&bench.js, &bench.run, round + 100, CONSUMED)
                        .await,
                );
                Peer::purge(&bench.js).await;
            } else if side == 0 {
                ra.push(bench.raw_awaited(round).await);
                rp.push(bench.raw_pipelined(round, PIPELINED).await);
                bench.purge().await;
                rc.push(bench.raw_consume(round).await);
            } else {
                ba.push(bench.bus_awaited(round).await);
                bp.push(bench.bus_pipelined(round, PIPELINED).await);
                bench.purge().await;
                bc.push(bench.bus_consume(round).await);
            }
        }
    }
    let (mut raw_lat, mut bus_lat) = (vec![], vec![]);
    for round in 0..LATENCY_ROUNDS {
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                raw_lat.push(bench.raw_latency().await);
            } else {
                bus_lat.push(bench.bus_latency().await);
            }
        }
    }
    let p = |v: &[(f64, f64)], q: fn(&(f64, f64)) -> f64| median(v.iter().map(q).collect());
    let (raw_p50, raw_p99) = (p(&raw_lat, |l| l.0), p(&raw_lat, |l| l.1));
    let (bus_p50, bus_p99) = (p(&bus_lat, |l| l.0), p(&bus_lat, |l| l.1));

    let rate = |s: &Sample| s.rate;
    let cpu = |s: &Sample| s.cpu_us;
    let figures = [
        Figure::against(
            "jetstream.publish.awaited",
            median_of(&ba, rate),
            "events/s",
            median_of(&ra, rate),
        ),
        Figure::against(
            "jetstream.publish.pipelined",
            median_of(&bp, rate),
            "events/s",
            median_of(&rp, rate),
        ),
        Figure::against(
            "jetstream.consume",
            median_of(&bc, rate),
            "events/s",
            median_of(&rc, rate),
        ),
        Figure::against("jetstream.latency.p50", bus_p50, "us", raw_p50),
        Figure::against("jetstream.latency.p99", bus_p99, "us", raw_p99),
        // Client CPU per event: what the library itself costs, robust to a busy machine.
        Figure::against(
            "jetstream.cpu.publish.awaited",
            median_of(&ba, cpu),
            "us/event",
            median_of(&ra, cpu),
        ),
        Figure::against(
            "jetstream.cpu.publish.pipelined",
            median_of(&bp, cpu),
            "us/event",
            median_of(&rp, cpu),
        ),
        Figure::against(
            "jetstream.cpu.consume",
            median_of(&bc, cpu),
            "us/event",
            median_of(&rc, cpu),
        ),
    ];
    for f in &figures {
        f.print(json);
    }
    if let Some(peer) = peer {
        let peers = [
            Figure::against(
                "ruststream.publish.pipelined",
                median_of(&pp, rate),
                "events/s",
                median_of(&rp, rate),
            ),
            Figure::against(
                "ruststream.consume",
                median_of(&pc, rate),
                "events/s",
                median_of(&rc, rate),
            ),
            Figure::against(
                "ruststream.cpu.publish.pipelined",
                median_of(&pp, cpu),
                "us/event",
                median_of(&rp, cpu),
            ),
            Figure::against(
                "ruststream.cpu.consume",
                median_of(&pc, cpu),
                "us/event",
                median_of(&rc, cpu),
            ),
            // The bus against RustStream: above 1 the bus is ahead (rates) or costlier (CPU).
            Figure::against(
                "bus_vs_ruststream.publish.pipelined",
                median_of(&bp, rate),
                "events/s",
                median_of(&pp, rate),
            ),
            Figure::against(
                "bus_vs_ruststream.consume",
                median_of(&bc, rate),
                "events/s",
                median_of(&pc, rate),
            ),
            Figure::against(
                "bus_vs_ruststream.cpu.publish.pipelined",
                median_of(&bp, cpu),
                "us/event",
                median_of(&pp, cpu),
            ),
            Figure::against(
                "bus_vs_ruststream.cpu.consume",
                median_of(&bc, cpu),
                "us/event",
                median_of(&pc, cpu),
            ),
        ];
        for f in &peers {
            f.print(json);
        }
        peer.close().await;
    }
    bench.bus.close().await.expect("closing the bus");
    let _ = bench.client.drain().await;
    drop(server);
}

/// Raw pull consumer of everything in `stream` matching `filter` (`""`: all), through the
/// durable `durable` (deleted before and after): decode and ack `n` messages.
pub(crate) async fn raw_consume(
    js: &Context,
    stream_name: &str,
    durable: &str,
    filter: &str,
    n: u64,
) -> Sample {
    let stream = js.get_stream(stream_name).await.expect("raw stream");
    // A consumer left by an interrupted run would start where that run stopped.
    let _ = stream.delete_consumer(durable).await;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.to_owned()),
            filter_subject: filter.to_owned(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: 4096,
            ..Default::default()
        })
        .await
        .expect("raw consumer");
    let t = Timer::start();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .expect("raw pull");
    let got = Counter::untargeted();
    let consume = async {
        while got.get() < n {
            let m = messages
                .next()
                .await
                .expect("the raw pull ended")
                .expect("raw message");
            std::hint::black_box(JsBenchPrice::decode(m.payload.clone()).expect("decodes"));
            m.ack().await.expect("raw ack");
            got.hit();
        }
    };
    within(
        format!("the raw consumer `{durable}` of stream {stream_name} to receive {n} messages"),
        consume,
    )
    .await;
    let sample = t.finish(n);
    drop(messages);
    let _ = stream.delete_consumer(durable).await;
    sample
}
