//! How cost grows: one curve per dimension, each point measured in the same run, beside raw
//! `async-nats` where a raw client does the same work.
//!
//! | curve | points | what is measured |
//! |---|---|---|
//! | `payload` | 128 B, 1 KiB, 16 KiB, 256 KiB | pipelined publish and consume, bus and raw |
//! | `groups` | 1, 4, 16 groups on one topic | events/s delivered to every group, JetStream and memory |
//! | `topics` | 1, 100, 1 000 subjects | one wildcard subscription consuming them, bus and raw |
//! | `concurrency` | 1, 4, 16, 64, 256, 1 024 | a handler that awaits 1 ms, consuming from JetStream |
//! | `processes` | 1, 2, 4 processes in one group | total events/s, and each process's share |
//! | `cluster` | R1, R3 streams on a 3-node loopback cluster | pipelined publish and consume |
//!
//! Every point prints its figures; the suite then prints one markdown table per curve and, built
//! with the `charts` feature and given `--out DIR`, draws `DIR/<curve>.png`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::Context;
use async_nats::jetstream::message::PublishMessage;
use bus::testing::{NatsCluster, NatsServer};
use bus::{Event, EventBus, EventBusConfig, HandlerError, Subscription};
use futures::StreamExt;
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::bench_common::{Counter, Sample, Timer, median_of, run_id, within};
use crate::bench_dedup::pipelined;
use crate::bench_jetstream::{JsBenchPrice, event, raw_consume};
use crate::report::Figure;

const RAW_STREAM: &str = "RAW_CURVES";
const RAW_SUBJECT: &str = "cqc.rawcurve.v1.js_bench_price";
/// Rounds per point (the median is kept).
const ROUNDS: usize = 3;
/// Events per point where the payload is small.
const EVENTS: u64 = 20_000;

/// One curve: its points' labels and its series, ready for a table and a chart.
#[derive(Debug)]
pub struct Curve {
    /// File name of the chart, and the curve's name in figure names.
    pub name: &'static str,
    /// Chart title.
    pub title: &'static str,
    /// What the points are.
    pub x_axis: &'static str,
    /// What the values are.
    pub y_axis: &'static str,
    /// Whether the chart's y axis is logarithmic (series of very different sizes).
    pub log_y: bool,
    /// One label per point.
    pub points: Vec<String>,
    /// Series names and their values, one per point.
    pub series: Vec<(String, Vec<f64>)>,
}

impl Curve {
    /// A markdown table of the curve: one row per point, one column per series.
    pub fn table(&self) -> String {
        let mut t = format!("| {} |", self.x_axis);
        for (name, _) in &self.series {
            t.push_str(&format!(" {name} |"));
        }
        t.push_str(&format!("\n|---|{}\n", "---|".repeat(self.series.len())));
        for (i, point) in self.points.iter().enumerate() {
            t.push_str(&format!("| {point} |"));
            for (_, values) in &self.series {
                t.push_str(&format!(" {} |", thousands(values[i])));
            }
            t.push('\n');
        }
        t
    }
}

/// `123456.7` as `123 457`; small values keep two decimals.
fn thousands(v: f64) -> String {
    if v.abs() < 100.0 {
        return format!("{v:.2}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// The curves' shared state: one server (or `--url`), a raw client, a run id.
struct Curves {
    url: String,
    js: Context,
    run: String,
    rounds: usize,
    json: bool,
}

impl Curves {
    fn config(&self) -> EventBusConfig {
        let mut config = EventBusConfig::jetstream([self.url.clone()]).with_cqc_conventions();
        config.consumer_name = "curves".into();
        config.publish_timeout = Duration::from_secs(60);
        config
    }

    /// A fresh round number, so event ids never repeat within the run.
    fn round(&mut self) -> usize {
        self.rounds += 1;
        self.rounds
    }

    /// A fresh id for a phase's groups.
    fn group_run(&mut self) -> String {
        let round = self.round();
        format!("{}-{round}", self.run)
    }

    fn events(&mut self, n: u64, padding: usize) -> Vec<JsBenchPrice> {
        let round = self.round();
        let padding = vec![7u8; padding];
        (0..n)
            .map(|s| JsBenchPrice {
                padding: padding.clone(),
                ..event(&self.run, round, s, 0)
            })
            .collect()
    }

    async fn purge(&self, stream: &str) {
        let _: serde_json::Value = self
            .js
            .request(format!("STREAM.PURGE.{stream}"), &serde_json::json!({}))
            .await
            .expect("purging a stream");
    }

    fn print(&self, f: &Figure) {
        f.print(self.json);
    }
}

/// The raw side's message: the same headers as the bus.
fn raw_message(e: &JsBenchPrice) -> PublishMessage {
    PublishMessage::build()
        .payload(e.encode_to_vec().into())
        .message_id(&e.event_id)
        .header(bus::headers::EVENT_TYPE, JsBenchPrice::FULL_NAME)
}

/// How a bus consume phase subscribes.
#[derive(Clone)]
struct Consume {
    filter: String,
    groups: usize,
    concurrency: usize,
    /// What the handler awaits per event.
    delay: Option<Duration>,
}

impl Consume {
    fn on_topic() -> Self {
        Consume {
            filter: JsBenchPrice::TOPIC.as_str().to_owned(),
            groups: 1,
            concurrency: 256,
            delay: None,
        }
    }

    fn group(&self, run: &str, g: usize) -> String {
        format!("curve-{run}-{g}")
    }

    fn subscription(&self, group: String, seen: Arc<Counter>) -> Subscription {
        let delay = self.delay;
        Subscription::with_filter::<JsBenchPrice>("curve", &self.filter)
            .expect("a valid filter")
            .group(group)
            .concurrency(self.concurrency)
            .max_ack_pending(4096)
            .handler(move |e: JsBenchPrice| {
                std::hint::black_box(e);
                let seen = Arc::clone(&seen);
                async move {
                    if let Some(d) = delay {
                        tokio::time::sleep(d).await;
                    }
                    seen.hit();
                    Ok::<_, HandlerError>(())
                }
            })
    }

    /// Creates the groups' durable consumers (they start at new events) and closes them, so
    /// `fill` can then store the events the timed phase consumes.
    async fn prepare(&self, config: &EventBusConfig, run: &str) {
        let bus = EventBus::connect(config.clone()).await.expect("bus");
        for g in 0..self.groups {
            bus.subscribe(self.subscription(self.group(run, g), Counter::untargeted()))
                .await
                .expect("subscribe");
        }
        bus.close().await.expect("close");
    }

    /// Subscribes every group and times until each has handled `n` events.
    async fn timed(&self, config: &EventBusConfig, run: &str, n: u64) -> Sample {
        let bus = EventBus::connect(config.clone()).await.expect("bus");
        let total = n * self.groups as u64;
        let seen = Counter::new(total);
        let t = Timer::start();
        for g in 0..self.groups {
            bus.subscribe(self.subscription(self.group(run, g), Arc::clone(&seen)))
                .await
                .expect("subscribe");
        }
        seen.wait(&format!(
            "{} group(s) on {} to handle {n} events each",
            self.groups, self.filter
        ))
        .await;
        let sample = t.finish(n);
        bus.close().await.expect("close");
        sample
    }

    async fn delete(&self, js: &Context, stream: &str, run: &str) {
        for g in 0..self.groups {
            let durable =
                bus::jetstream::durable_name(&self.group(run, g), &self.filter).expect("durable");
            let _: serde_json::Value = js
                .request(
                    format!("CONSUMER.DELETE.{stream}.{durable}"),
                    &serde_json::json!({}),
                )
                .await
                .expect("deleting a consumer");
        }
    }
}

/// Pipelined bus publish of `events`.
async fn bus_publish(bus: &EventBus, events: &[JsBenchPrice]) -> Sample {
    let t = Timer::start();
    within(
        format!("{} bus publishes to be acknowledged", events.len()),
        bus.publish_batch(events),
    )
    .await
    .expect("bus publish");
    t.finish(events.len() as u64)
}

/// Pipelined raw publish of `events` on `subject`.
async fn raw_publish(js: &Context, subject: &str, events: &[JsBenchPrice]) -> Sample {
    let messages = events.iter().map(raw_message).collect();
    let t = Timer::start();
    within(
        format!("{} raw publishes to be acknowledged", events.len()),
        pipelined(js, subject, messages),
    )
    .await;
    t.finish(events.len() as u64)
}

impl Curves {
    /// One consume phase of the bus: fresh groups, `events` stored, then timed.
    async fn bus_consume(
        &mut self,
        config: &EventBusConfig,
        c: &Consume,
        n: u64,
        pad: usize,
    ) -> Sample {
        let run = self.group_run();
        c.prepare(config, &run).await;
        let bus = EventBus::connect(config.clone()).await.expect("bus");
        let events = self.events(n, pad);
        bus_publish(&bus, &events).await;
        bus.close().await.expect("close");
        let sample = c.timed(config, &run, n).await;
        c.delete(&self.js, &config.stream_name, &run).await;
        self.purge(&config.stream_name).await;
        sample
    }

    async fn payload(&mut self) -> Curve {
        let sizes = [128usize, 1024, 16 * 1024, 256 * 1024];
        let base = event(&self.run, 0, 0, 0).encoded_len() + 4;
        let config = self.config();
        let bus = EventBus::connect(config.clone()).await.expect("bus");
        let mut series = vec![
            ("raw publish (MB/s)".to_owned(), vec![]),
            ("bus publish (MB/s)".to_owned(), vec![]),
            ("raw consume (MB/s)".to_owned(), vec![]),
            ("bus consume (MB/s)".to_owned(), vec![]),
        ];
        for size in sizes {
            let n = ((32 << 20) / size as u64).clamp(256, EVENTS);
            let pad = size.saturating_sub(base);
            let mut s: [Vec<Sample>; 4] = Default::default();
            for _ in 0..ROUNDS {
                self.purge(RAW_STREAM).await;
                self.purge(&config.stream_name).await;
                let events = self.events(n, pad);
                s[0].push(raw_publish(&self.js, RAW_SUBJECT, &events).await);
                let events = self.events(n, pad);
                s[1].push(bus_publish(&bus, &events).await);
                self.purge(RAW_STREAM).await;
                let events = self.events(n, pad);
                raw_publish(&self.js, RAW_SUBJECT, &events).await;
                s[2].push(raw_consume(&self.js, RAW_STREAM, "raw_curve", RAW_SUBJECT, n).await);
                self.purge(&config.stream_name).await;
                s[3].push(
                    self.bus_consume(&config, &Consume::on_topic(), n, pad)
                        .await,
                );
            }
            let mb = |v: &[Sample]| median_of(v, |x| x.rate) * size as f64 / 1e6;
            for (i, side) in ["raw.publish", "bus.publish", "raw.consume", "bus.consume"]
                .into_iter()
                .enumerate()
            {
                let rate = median_of(&s[i], |x| x.rate);
                self.print(&Figure::new(
                    format!("curve.payload.{size}.{side}"),
                    rate,
                    "events/s",
                ));
                series[i].1.push(mb(&s[i]));
            }
        }
        bus.close().await.expect("close");
        Curve {
            name: "payload",
            title: "Payload size: pipelined publish and consume, bus beside raw async-nats",
            x_axis: "payload",
            y_axis: "MB/s (log)",
            log_y: true,
            points: vec![
                "128 B".into(),
                "1 KiB".into(),
                "16 KiB".into(),
                "256 KiB".into(),
            ],
            series,
        }
    }

    async fn groups(&mut self) -> Curve {
        let config = self.config();
        let counts = [1usize, 4, 16];
        let mut js_series = vec![];
        let mut mem_series = vec![];
        for groups in counts {
            let c = Consume {
                groups,
                ..Consume::on_topic()
            };
            let mut s = vec![];
            for _ in 0..ROUNDS {
                s.push(self.bus_consume(&config, &c, EVENTS / 2, 0).await);
            }
            let deliveries = median_of(&s, |x| x.rate) * groups as f64;
            self.print(&Figure::new(
                format!("curve.groups.{groups}.jetstream"),
                deliveries,
                "deliveries/s",
            ));
            js_series.push(deliveries);
            let events: Vec<_> = (0..200_000).map(crate::bench_memory::event).collect();
            let mut best = 0f64;
            for _ in 0..ROUNDS {
                let d = crate::bench_memory::bus_run(&events, groups).await;
                best = best.max(events.len() as f64 * groups as f64 / d.as_secs_f64());
            }
            self.print(&Figure::new(
                format!("curve.groups.{groups}.memory"),
                best,
                "deliveries/s",
            ));
            mem_series.push(best);
        }
        Curve {
            name: "groups",
            title: "Groups on one topic: deliveries per second to all groups",
            x_axis: "groups",
            y_axis: "deliveries/s (log)",
            log_y: true,
            points: counts.iter().map(ToString::to_string).collect(),
            series: vec![
                ("JetStream".into(), js_series),
                ("memory".into(), mem_series),
            ],
        }
    }

    async fn topics(&mut self) -> Curve {
        let config = self.config();
        let counts = [1usize, 100, 1000];
        let prefix = "cqc.events.v1.curve_topics";
        let filter = format!("{prefix}.*");
        let mut series = vec![
            ("raw publish".to_owned(), vec![]),
            ("raw consume".to_owned(), vec![]),
            ("bus consume".to_owned(), vec![]),
        ];
        for topics in counts {
            let subjects: Vec<String> = (0..topics).map(|t| format!("{prefix}.t{t}")).collect();
            let mut s: [Vec<Sample>; 3] = Default::default();
            for _ in 0..ROUNDS {
                self.purge(&config.stream_name).await;
                s[0].push(self.fill_topics(&subjects).await);
                s[1].push(
                    raw_consume(&self.js, &config.stream_name, "raw_curve", &filter, EVENTS).await,
                );
                let run = self.group_run();
                let c = Consume {
                    filter: filter.clone(),
                    ..Consume::on_topic()
                };
                self.purge(&config.stream_name).await;
                c.prepare(&config, &run).await;
                self.fill_topics(&subjects).await;
                s[2].push(c.timed(&config, &run, EVENTS).await);
                c.delete(&self.js, &config.stream_name, &run).await;
            }
            for (i, side) in ["raw.publish", "raw.consume", "bus.consume"]
                .into_iter()
                .enumerate()
            {
                let rate = median_of(&s[i], |x| x.rate);
                self.print(&Figure::new(
                    format!("curve.topics.{topics}.{side}"),
                    rate,
                    "events/s",
                ));
                series[i].1.push(rate);
            }
        }
        self.purge(&config.stream_name).await;
        Curve {
            name: "topics",
            title: "Subjects under one wildcard subscription",
            x_axis: "subjects",
            y_axis: "events/s",
            log_y: false,
            points: counts.iter().map(ToString::to_string).collect(),
            series,
        }
    }

    /// Stores [`EVENTS`] events round-robin over `subjects` with the bus's headers (raw client,
    /// pipelined), returning the publish sample.
    async fn fill_topics(&mut self, subjects: &[String]) -> Sample {
        let events = self.events(EVENTS, 0);
        let t = Timer::start();
        let mut acks = futures::stream::FuturesUnordered::new();
        for (i, e) in events.iter().enumerate() {
            if acks.len() >= 1000 {
                let ack: Option<Result<_, _>> = acks.next().await;
                ack.expect("an ack").expect("publish ack");
            }
            let subject = subjects[i % subjects.len()].clone();
            let ack = self
                .js
                .send_publish(subject, raw_message(e))
                .await
                .expect("publish");
            acks.push(std::future::IntoFuture::into_future(ack));
        }
        within("the topic curve's publishes", async {
            while let Some(a) = acks.next().await {
                a.expect("publish ack");
            }
        })
        .await;
        t.finish(EVENTS)
    }

    async fn concurrency(&mut self) -> Curve {
        let config = self.config();
        // Past 64 the sleeps alone would allow more than one process consumes: where the
        // measured line leaves the limit is where the bus and the server, not the handler, bound it.
        let levels = [1usize, 4, 16, 64, 256, 1024];
        let mut rate_series = vec![];
        let mut ideal = vec![];
        for c in levels {
            let consume = Consume {
                concurrency: c,
                delay: Some(Duration::from_millis(1)),
                ..Consume::on_topic()
            };
            let n = (c as u64 * 250).clamp(1_000, EVENTS);
            let mut s = vec![];
            for _ in 0..ROUNDS {
                s.push(self.bus_consume(&config, &consume, n, 0).await);
            }
            let rate = median_of(&s, |x| x.rate);
            let limit = sleep_limit(c, n).await;
            self.print(&Figure::against(
                format!("curve.concurrency.{c}"),
                rate,
                "events/s",
                limit,
            ));
            self.print(&Figure::new(
                format!("curve.concurrency.{c}.cpu"),
                median_of(&s, |x| x.cpu_us),
                "us/event",
            ));
            rate_series.push(rate);
            ideal.push(limit);
        }
        Curve {
            name: "concurrency",
            title: "Handler concurrency, handler awaits 1 ms (JetStream consume)",
            x_axis: "concurrency",
            y_axis: "events/s (log)",
            log_y: true,
            points: levels.iter().map(ToString::to_string).collect(),
            series: vec![
                ("measured".into(), rate_series),
                ("limit: the same 1 ms sleeps, no bus".into(), ideal),
            ],
        }
    }

    async fn processes(&mut self) -> Curve {
        let config = self.config();
        let counts = [1usize, 2, 4];
        let mut totals = vec![];
        let n = EVENTS * 2;
        for procs in counts {
            let mut rates = vec![];
            let mut shares = vec![];
            for _ in 0..ROUNDS {
                let (rate, share) = self.process_round(&config, procs, n).await;
                rates.push(rate);
                shares = share;
            }
            let rate = crate::bench_common::median(rates);
            self.print(&Figure::new(
                format!("curve.processes.{procs}"),
                rate,
                "events/s",
            ));
            self.print(&Figure::new(
                format!("curve.processes.{procs}.smallest_share"),
                shares.iter().copied().min().unwrap_or(0) as f64 / n as f64,
                "of events",
            ));
            totals.push(rate);
        }
        Curve {
            name: "processes",
            title: "Consumer processes in one group (total events/s)",
            x_axis: "processes",
            y_axis: "events/s",
            log_y: false,
            points: counts.iter().map(ToString::to_string).collect(),
            series: vec![("total".into(), totals)],
        }
    }

    /// Stores `n` events, starts `procs` member processes of one group, and times from their
    /// start signal until every event is acknowledged; returns the rate and each one's count.
    async fn process_round(
        &mut self,
        config: &EventBusConfig,
        procs: usize,
        n: u64,
    ) -> (f64, Vec<u64>) {
        let run = self.group_run();
        let c = Consume::on_topic();
        c.prepare(config, &run).await;
        let bus = EventBus::connect(config.clone()).await.expect("bus");
        let events = self.events(n, 0);
        bus_publish(&bus, &events).await;
        bus.close().await.expect("close");
        let exe = std::env::current_exe().expect("the bench's own path");
        let mut members = Vec::new();
        for _ in 0..procs {
            let mut child = tokio::process::Command::new(&exe)
                .args(["group-member", "--url", &self.url, "--group"])
                .arg(c.group(&run, 0))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("starting a group member process");
            let stdin = child.stdin.take().expect("stdin");
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let ready = within("a group member to connect", lines.next_line()).await;
            assert_eq!(
                ready.ok().flatten().as_deref(),
                Some("ready"),
                "a member's start"
            );
            members.push((child, stdin, lines));
        }
        let start = Instant::now();
        for (_, stdin, _) in &mut members {
            stdin.write_all(b"go\n").await.expect("starting a member");
        }
        let durable = bus::jetstream::durable_name(&c.group(&run, 0), &c.filter).expect("durable");
        within(
            format!("{n} events to be acknowledged by {procs} group member processes"),
            self.wait_acked(&config.stream_name, &durable, n),
        )
        .await;
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let mut counts = vec![];
        for (mut child, mut stdin, mut lines) in members {
            stdin.write_all(b"stop\n").await.expect("stopping a member");
            let count = within("a group member's count", lines.next_line())
                .await
                .ok()
                .flatten()
                .and_then(|l| l.parse::<u64>().ok())
                .expect("a member prints its count");
            counts.push(count);
            within("a group member to exit", child.wait())
                .await
                .expect("member exit");
        }
        c.delete(&self.js, &config.stream_name, &run).await;
        self.purge(&config.stream_name).await;
        (rate, counts)
    }

    /// Polls the consumer until its acknowledgement floor covers `n` messages.
    async fn wait_acked(&self, stream: &str, durable: &str, n: u64) {
        loop {
            let info: serde_json::Value = self
                .js
                .request(
                    format!("CONSUMER.INFO.{stream}.{durable}"),
                    &serde_json::json!({}),
                )
                .await
                .expect("consumer info");
            let pending = info.get("num_pending").and_then(serde_json::Value::as_u64);
            let unacked = info
                .get("num_ack_pending")
                .and_then(serde_json::Value::as_u64);
            let delivered = info
                .pointer("/delivered/consumer_seq")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            if pending == Some(0) && unacked == Some(0) && delivered >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The limit of the concurrency curve on this runtime: `concurrency` tasks doing nothing but
/// the handler's 1 ms sleeps, `n` in all (a tokio sleep of 1 ms lasts 1 to 2 ms: the timer
/// rounds up to its next millisecond tick).
async fn sleep_limit(concurrency: usize, n: u64) -> f64 {
    let per_task = n / concurrency as u64;
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(async move {
                for _ in 0..per_task {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a sleeping task");
    }
    (per_task * concurrency as u64) as f64 / start.elapsed().as_secs_f64()
}

/// The cluster curve: a 3-node loopback cluster, R1 then R3 streams (the same stream name,
/// deleted between them), bus pipelined publish and consume.
async fn cluster(json: bool) -> Curve {
    let cluster = NatsCluster::start(3).await;
    let url = cluster.urls()[0].clone();
    let client = async_nats::connect(cluster.urls()[0].as_str())
        .await
        .expect("connecting to the cluster");
    let js = async_nats::jetstream::new(client.clone());
    let mut curves = Curves {
        url,
        js,
        run: run_id(),
        rounds: 0,
        json,
    };
    let mut publish = vec![];
    let mut consume = vec![];
    for replicas in [1usize, 3] {
        let mut config = cluster.bus_config(replicas);
        config.stream_name = format!("CURVES_R{replicas}");
        config.dead_letter.stream_name = format!("CURVES_R{replicas}_DLQ");
        config.consumer_name = "curves".into();
        config.publish_timeout = Duration::from_secs(60);
        let bus = EventBus::connect(config.clone()).await.expect("bus");
        let mut p = vec![];
        let mut c = vec![];
        for _ in 0..ROUNDS {
            let events = curves.events(EVENTS, 0);
            p.push(bus_publish(&bus, &events).await);
            curves.purge(&config.stream_name).await;
            c.push(
                curves
                    .bus_consume(&config, &Consume::on_topic(), EVENTS, 0)
                    .await,
            );
        }
        bus.close().await.expect("close");
        for stream in [&config.stream_name, &config.dead_letter.stream_name] {
            let _: serde_json::Value = curves
                .js
                .request(format!("STREAM.DELETE.{stream}"), &serde_json::json!({}))
                .await
                .expect("deleting a stream");
        }
        for (side, s, out) in [("publish", &p, &mut publish), ("consume", &c, &mut consume)] {
            let rate = median_of(s, |x| x.rate);
            curves.print(&Figure::new(
                format!("curve.cluster.r{replicas}.{side}"),
                rate,
                "events/s",
            ));
            out.push(rate);
        }
    }
    let _ = client.drain().await;
    drop(cluster);
    Curve {
        name: "cluster",
        title: "3-node loopback cluster: R1 against R3 streams",
        x_axis: "stream replicas",
        y_axis: "events/s",
        log_y: false,
        points: vec!["R1".into(), "R3".into()],
        series: vec![
            ("pipelined publish".into(), publish),
            ("consume".into(), consume),
        ],
    }
}

/// Every curve name, in the order they run.
pub const CURVES: [&str; 6] = [
    "payload",
    "groups",
    "topics",
    "concurrency",
    "processes",
    "cluster",
];

/// Runs the curves named in `only` (all when empty) against `url` or a `nats-server` it
/// starts (the cluster curve always starts its own 3 nodes), prints each point, then a markdown
/// table per curve, and draws `out/<curve>.png` when `out` is given.
///
/// # Panics
///
/// When a server cannot be started or reached, a phase does not finish within
/// [`PHASE_TIMEOUT`](crate::bench_common::PHASE_TIMEOUT), or a chart cannot be written.
pub async fn run(json: bool, url: Option<String>, only: &[String], out: Option<PathBuf>) {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let server = match url {
        Some(_) => None,
        None => Some(NatsServer::start().await),
    };
    let url = url.unwrap_or_else(|| server.as_ref().expect("started").url());
    let client = async_nats::connect(url.as_str())
        .await
        .expect("connecting async-nats");
    let js = async_nats::jetstream::new(client.clone());
    let created: serde_json::Value = js
        .request(
            format!("STREAM.CREATE.{RAW_STREAM}"),
            &serde_json::json!({
                "name": RAW_STREAM, "subjects": ["cqc.rawcurve.v1.>"], "retention": "limits",
                "storage": "file", "num_replicas": 1,
                "duplicate_window": 120_000_000_000u64, "discard": "old",
            }),
        )
        .await
        .expect("raw stream");
    assert!(
        created.get("error").is_none() || created.pointer("/error/err_code") == Some(&10058.into()),
        "creating stream {RAW_STREAM}: {created}"
    );
    let mut curves = Curves {
        url,
        js,
        run: run_id(),
        rounds: 0,
        json,
    };
    // The bus creates its stream on connect.
    EventBus::connect(curves.config())
        .await
        .expect("bus")
        .close()
        .await
        .expect("close");
    let report = |curve: Curve| {
        #[allow(clippy::print_stdout)]
        {
            println!("\n### {}\n\n{}", curve.title, curve.table());
        }
        if let Some(dir) = &out {
            draw(&curve, dir);
        }
    };
    if wanted("payload") {
        report(curves.payload().await);
    }
    if wanted("groups") {
        report(curves.groups().await);
    }
    if wanted("topics") {
        report(curves.topics().await);
    }
    if wanted("concurrency") {
        report(curves.concurrency().await);
    }
    if wanted("processes") {
        report(curves.processes().await);
    }
    let _ = client.drain().await;
    drop(server);
    if wanted("cluster") {
        report(cluster(json).await);
    }
}

#[cfg(feature = "charts")]
fn draw(curve: &Curve, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("{}.png", curve.name));
    crate::bench_chart::draw(
        &crate::bench_chart::Chart {
            title: curve.title,
            x_axis: curve.x_axis,
            y_axis: curve.y_axis,
            log_y: curve.log_y,
            x_labels: &curve.points,
            series: &curve.series,
        },
        &path,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    #[allow(clippy::print_stdout)]
    {
        println!("![{}]({})", curve.title, path.display());
    }
}

#[cfg(not(feature = "charts"))]
fn draw(_: &Curve, dir: &Path) {
    panic!(
        "--out {}: this bench was built without charts; build it with \
         `--features charts` to draw them",
        dir.display()
    );
}

/// The `group-member` process of the `processes` curve: connects to `url`, prints `ready`,
/// subscribes to `group` on reading `go`, and on reading `stop` closes and prints how many
/// events it handled.
///
/// # Panics
///
/// When it cannot connect or subscribe, or its parent goes away.
pub async fn member(url: String, group: String) {
    let mut config = EventBusConfig::jetstream([url]).with_cqc_conventions();
    config.consumer_name = "curves".into();
    let bus = EventBus::connect(config).await.expect("member: connecting");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    #[allow(clippy::print_stdout)]
    {
        println!("ready");
    }
    let go = lines.next_line().await.ok().flatten();
    assert_eq!(
        go.as_deref(),
        Some("go"),
        "member: expected `go` from the bench"
    );
    let seen = Counter::untargeted();
    bus.subscribe(Consume::on_topic().subscription(group, Arc::clone(&seen)))
        .await
        .expect("member: subscribing");
    let stop = lines.next_line().await.ok().flatten();
    assert_eq!(
        stop.as_deref(),
        Some("stop"),
        "member: expected `stop` from the bench"
    );
    bus.close().await.expect("member: closing");
    #[allow(clippy::print_stdout)]
    {
        println!("{}", seen.get());
    }
}

#[cfg(test)]
mod tests {
    use super::{Curve, thousands};

    #[test]
    fn thousands_groups_digits_and_keeps_small_values_exact() {
        assert_eq!(thousands(1_234_567.4), "1 234 567");
        assert_eq!(thousands(999.6), "1 000");
        assert_eq!(thousands(-45_000.0), "-45 000");
        assert_eq!(thousands(4.537), "4.54");
    }

    #[test]
    fn a_curve_table_has_one_row_per_point_and_one_column_per_series() {
        let curve = Curve {
            name: "groups",
            title: "Groups",
            x_axis: "groups",
            y_axis: "deliveries/s",
            log_y: false,
            points: vec!["1".into(), "4".into()],
            series: vec![
                ("JetStream".into(), vec![35_838.2, 38_418.0]),
                ("memory".into(), vec![605_272.4, 656_042.3]),
            ],
        };
        assert_eq!(
            curve.table(),
            "| groups | JetStream | memory |\n\
             |---|---|---|\n\
             | 1 | 35 838 | 605 272 |\n\
             | 4 | 38 418 | 656 042 |\n"
        );
    }
}
