//! The logging and metrics middleware record what they promise: a span with the delivery's
//! fields and an outcome line; an outcome counter and a duration histogram by topic and group.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::middleware::{HANDLER_DURATION, HANDLER_TOTAL, Logging, Metrics};
use bus::{Event, EventBus, HandlerError, Subscription};
use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tests::Recorder;
use tests::events::Ping;

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

fn memory_bus() -> EventBus {
    let mut config = bus::EventBusConfig::memory();
    config.max_deliver = 1;
    bus::MemoryBus::new(config).unwrap().into()
}

// Current-thread runtime: the handler runs on the test thread, where the thread-local
// subscriber and recorder are installed.
#[tokio::test(flavor = "current_thread")]
async fn logging_writes_a_span_and_an_outcome_per_delivery() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut config = bus::EventBusConfig::memory();
    config.max_deliver = 1;
    config.trace_context = true;
    let bus: EventBus = bus::MemoryBus::new(config).unwrap().into();
    let done = Recorder::<(u64, String)>::new();
    let d = Arc::clone(&done);
    bus.subscribe(
        Subscription::new("logged", Ping::TOPIC)
            .layer(Logging::new())
            .handler(move |e: Ping, delivery: bus::Delivery| {
                let traceparent = delivery.headers().get("traceparent").unwrap_or_default();
                d.push((e.seq, traceparent.to_owned()));
                async move {
                    if e.seq == 2 {
                        Err(HandlerError::permanent("rejected"))
                    } else {
                        Ok(())
                    }
                }
            }),
    )
    .await
    .unwrap();
    bus.publish(&Ping::new(1)).await.unwrap();
    bus.publish(&Ping::new(2)).await.unwrap();
    done.wait_for(2, Duration::from_secs(5)).await;
    bus.close().await.unwrap();

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let ok_line = text
        .lines()
        .find(|l| l.contains("event handled"))
        .unwrap_or_else(|| panic!("no success line in:\n{text}"));
    for field in [
        "bus.handle",
        "topic=\"cqc.events.v1.conformance_ping\"",
        "event_type=\"cqc.events.v1.ConformancePing\"",
        "event_id=\"ping-1\"",
        "attempt=1",
        "group=\"service-logged\"",
        "outcome=\"ok\"",
        "duration_ms=",
    ] {
        assert!(ok_line.contains(field), "missing {field} in {ok_line}");
    }
    // The trace the delivery belongs to, from its `traceparent`.
    let items = done.items();
    let traceparent = &items.iter().find(|(seq, _)| *seq == 1).unwrap().1;
    let trace_id = traceparent.split('-').nth(1).unwrap();
    assert_eq!(trace_id.len(), 32, "{traceparent}");
    assert!(
        ok_line.contains(&format!("trace_id={trace_id}")),
        "{ok_line}"
    );
    let err_line = text
        .lines()
        .find(|l| l.contains("failed permanently"))
        .unwrap_or_else(|| panic!("no failure line in:\n{text}"));
    assert!(
        err_line.contains("ERROR") && err_line.contains("outcome=\"permanent\""),
        "{err_line}"
    );
    assert!(err_line.contains("event_id=\"ping-2\""), "{err_line}");
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_count_outcomes_and_record_durations() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let bus = memory_bus();
    let done = Recorder::<u64>::new();
    let d = Arc::clone(&done);
    bus.subscribe(
        Subscription::new("measured", Ping::TOPIC)
            .layer(Metrics)
            .handler(move |e: Ping| {
                d.push(e.seq);
                async move {
                    if e.seq.is_multiple_of(2) {
                        Err(HandlerError::permanent("even"))
                    } else {
                        Ok(())
                    }
                }
            }),
    )
    .await
    .unwrap();
    for seq in 1..=5 {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    done.wait_for(5, Duration::from_secs(5)).await;
    bus.close().await.unwrap();

    let mut ok = 0;
    let mut permanent = 0;
    let mut durations = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let k = key.key();
        if !k.name().starts_with("bus_handler_") {
            continue; // the bus's own series: `bus_series_*` tests below
        }
        let labels: Vec<(String, String)> = k
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        let label = |name: &str| {
            labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(label("topic"), Some(Ping::TOPIC.as_str()));
        assert_eq!(label("group"), Some("service-measured"));
        match (k.name(), value) {
            (HANDLER_TOTAL, DebugValue::Counter(n)) if label("outcome") == Some("ok") => ok = n,
            (HANDLER_TOTAL, DebugValue::Counter(n)) if label("outcome") == Some("permanent") => {
                permanent = n;
            }
            (HANDLER_DURATION, DebugValue::Histogram(samples)) => durations = samples.len(),
            other => panic!("unexpected metric {other:?}"),
        }
    }
    assert_eq!((ok, permanent, durations), (3, 2, 5));
}

/// One series of a snapshot: name and sorted labels.
type SeriesKey = (String, Vec<(String, String)>);

fn snapshot(snapshotter: &Snapshotter) -> HashMap<SeriesKey, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let k = key.key();
            let mut labels: Vec<_> = k
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((k.name().to_owned(), labels), value)
        })
        .collect()
}

fn series(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn counter(all: &HashMap<SeriesKey, DebugValue>, name: &str, labels: &[(&str, &str)]) -> u64 {
    match all.get(&series(name, labels)) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}; all: {:#?}", all.keys()),
    }
}

fn samples(all: &HashMap<SeriesKey, DebugValue>, name: &str, labels: &[(&str, &str)]) -> usize {
    match all.get(&series(name, labels)) {
        Some(DebugValue::Histogram(v)) => v.len(),
        other => panic!("{name} {labels:?}: {other:?}; all: {:#?}", all.keys()),
    }
}

// Current-thread runtime: the delivery worker runs on the test thread, where the local
// recorder is installed.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn bus_series_count_publishes_deliveries_and_their_fates() {
    use bus::telemetry::*;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let mut config = bus::EventBusConfig::memory();
    config.max_deliver = 2;
    config.consumer.backoff = vec![Duration::from_secs(1)];
    let bus = bus::testing::TestBus::with_config(config).unwrap();
    // 1 and 4 succeed; 2 fails permanently; 3 fails twice (retryable) and is dead-lettered.
    bus.subscribe(
        Subscription::new("fates", Ping::TOPIC).handler(|e: Ping| async move {
            match e.seq {
                2 => Err(HandlerError::permanent("bad")),
                3 => Err(HandlerError::retryable("down")),
                _ => Ok(()),
            }
        }),
    )
    .await
    .unwrap();
    for seq in 1..=4 {
        bus.publish(&Ping::new(seq)).await.unwrap();
    }
    let too_large = Ping {
        note: "x".repeat(bus::memory::MAX_PAYLOAD),
        ..Ping::new(5)
    };
    assert!(bus.publish(&too_large).await.is_err());
    bus.wait_idle().await;

    let all = snapshot(&snapshotter);
    let topic = ("topic", Ping::TOPIC.as_str());
    let group = ("group", "service-fates");
    assert_eq!(counter(&all, PUBLISH_TOTAL, &[topic, ("outcome", "ok")]), 4);
    assert_eq!(
        counter(&all, PUBLISH_TOTAL, &[topic, ("outcome", "too_large")]),
        1
    );
    assert_eq!(samples(&all, PUBLISH_DURATION, &[topic]), 4);
    // Dead letters are counted by `bus_dead_letters_total`, not as publishes.
    assert!(
        !all.keys()
            .any(|(_, l)| l.iter().any(|(_, v)| v.starts_with("dlq.")))
    );
    assert_eq!(counter(&all, DELIVERIES_TOTAL, &[topic, group]), 5);
    assert_eq!(counter(&all, ACKS_TOTAL, &[topic, group]), 2);
    assert_eq!(
        counter(&all, REDELIVERIES_TOTAL, &[topic, group, ("attempt", "1")]),
        1
    );
    for class in ["permanent", "retryable"] {
        assert_eq!(
            counter(&all, DEAD_LETTERS_TOTAL, &[topic, group, ("class", class)]),
            1,
            "{class}"
        );
    }
    for (outcome, n) in [("ack", 2), ("redeliver", 1), ("dead_letter", 2)] {
        assert_eq!(
            samples(
                &all,
                DELIVERY_DURATION,
                &[topic, group, ("outcome", outcome)]
            ),
            n,
            "{outcome}"
        );
    }
    match all.get(&series(HANDLERS_IN_FLIGHT, &[topic, group])) {
        Some(DebugValue::Gauge(v)) => assert_eq!(v.into_inner(), 0.0),
        other => panic!("in flight: {other:?}"),
    }
    assert!(
        !all.keys()
            .any(|(_, labels)| labels.iter().any(|(k, _)| k.contains("id"))),
        "no event ids as labels"
    );
    bus.close().await.unwrap();
}

// Current-thread runtime: the bus's sampling task runs on the test thread, where the local
// recorder is installed.
#[tokio::test(flavor = "current_thread")]
async fn jetstream_consumer_backlog_is_sampled() {
    use bus::telemetry::{CONSUMER_ACK_PENDING, CONSUMER_PENDING};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let server = bus::testing::NatsServer::start().await;
    let bus = EventBus::connect(server.bus_config()).await.unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::clone(&release);
    bus.subscribe(
        Subscription::new("stuck", Ping::TOPIC)
            .concurrency(1)
            .max_ack_pending(2)
            .handler(move |_: Ping| {
                let gate = Arc::clone(&gate);
                async move {
                    gate.notified().await;
                    Ok::<_, HandlerError>(())
                }
            }),
    )
    .await
    .unwrap();
    let events: Vec<Ping> = (1..=6).map(Ping::new).collect();
    bus.publish_batch(&events).await.unwrap();

    let labels = [("group", "service-stuck"), ("stream", "CQC_EVENTS")];
    let gauge =
        |all: &HashMap<SeriesKey, DebugValue>, name: &str| match all.get(&series(name, &labels)) {
            Some(DebugValue::Gauge(v)) => Some(v.into_inner()),
            _ => None,
        };
    // Sampled every CONSUMER_SAMPLE_INTERVAL, the first time as the subscription starts: wait
    // for a sample taken once delivery began. A sample between the publish and the first pull
    // (6 pending, none delivered) is true but says nothing about ack-pending; the next one,
    // an interval later, does.
    let deadline = tokio::time::Instant::now() + bus::jetstream::CONSUMER_SAMPLE_INTERVAL * 4;
    let (pending, ack_pending) = loop {
        let all = snapshot(&snapshotter);
        let sample = (
            gauge(&all, CONSUMER_PENDING),
            gauge(&all, CONSUMER_ACK_PENDING),
        );
        if let (Some(p), Some(a)) = sample
            && p + a == 6.0
            && a >= 1.0
        {
            break (p, a);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no sample with the 6 events, some delivered: {sample:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // At most max_ack_pending (2) are delivered; the rest wait in the stream.
    assert!(ack_pending <= 2.0, "{ack_pending}");
    assert_eq!(pending, 6.0 - ack_pending);
    release.notify_waiters();
    for _ in 0..6 {
        release.notify_one();
    }
    bus.close().await.unwrap();
}
