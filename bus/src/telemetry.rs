//! The metrics every bus emits through the [`metrics`](https://docs.rs/metrics) facade. The bus
//! installs no exporter: install one (`metrics-exporter-prometheus`, StatsD, ...) before
//! connecting the bus, and these series appear; without one they cost next to nothing.
//!
//! | name | kind | unit | labels | what |
//! |---|---|---|---|---|
//! | `bus_publish_total` | counter | events | `topic`, `outcome` | your publishes (`publish`, `publish_to`, `publish_raw`, each event of `publish_batch`; dead letters are counted in `bus_dead_letters_total`): `outcome` is `ok` or the error class ([`publish_error_class`]) |
//! | `bus_publish_duration_seconds` | histogram | seconds | `topic` | one publish, until it is stored (single publishes; a batch counts its events in `bus_publish_total`) |
//! | `bus_deliveries_total` | counter | deliveries | `topic`, `group` | deliveries handed to a handler, redeliveries included |
//! | `bus_acks_total` | counter | deliveries | `topic`, `group` | deliveries acknowledged after a handler's `Ok` |
//! | `bus_redeliveries_total` | counter | deliveries | `topic`, `group`, `attempt` | retryable failures given back (NAK with delay); `attempt` is the delivery that failed (1, 2, ... up to `max_deliver`) |
//! | `bus_dead_letters_total` | counter | events | `topic`, `group`, `class` | events dead-lettered, by error class (`permanent`, `decode`, `panic`, `retryable`, `timeout`, `max_deliveries`) |
//! | `bus_delivery_duration_seconds` | histogram | seconds | `topic`, `group`, `outcome` | from the handler's start to its verdict: `outcome` is `ack`, `redeliver` or `dead_letter` |
//! | `bus_handlers_in_flight` | gauge | handlers | `topic`, `group` | handlers running now |
//! | `bus_consumer_pending` | gauge | messages | `stream`, `group` | JetStream: messages in the stream the durable consumer has not been delivered yet |
//! | `bus_consumer_ack_pending` | gauge | messages | `stream`, `group` | JetStream: messages delivered and not yet acknowledged |
//!
//! On the delivery side `topic` is the subscription's filter (`cqc.events.v1.>` stays one
//! series however many subjects it matches) and `group` its group, so the number of series is
//! bounded by your code, never by the events: no event id, sequence or error text is a label.
//! The consumer gauges are sampled from the consumer's info every
//! [`CONSUMER_SAMPLE_INTERVAL`](crate::jetstream::CONSUMER_SAMPLE_INTERVAL).
//!
//! Series handles are registered when a subscription starts (and on a topic's first publish), so
//! install the recorder before connecting the bus.
//!
//! The [`Metrics`](crate::middleware::Metrics) middleware adds per-handler series
//! (`bus_handler_total`, `bus_handler_duration_seconds`) where you want them.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, SharedString};

use crate::util::{FnvMap, read, write};
use crate::{Error, ErrorClass};

/// Counter of publishes, by `topic` and `outcome`.
pub const PUBLISH_TOTAL: &str = "bus_publish_total";
/// Histogram of publish durations in seconds, by `topic`.
pub const PUBLISH_DURATION: &str = "bus_publish_duration_seconds";
/// Counter of deliveries handed to handlers, by `topic` (filter) and `group`.
pub const DELIVERIES_TOTAL: &str = "bus_deliveries_total";
/// Counter of acknowledged deliveries, by `topic` and `group`.
pub const ACKS_TOTAL: &str = "bus_acks_total";
/// Counter of redeliveries after retryable failures, by `topic`, `group` and `attempt`.
pub const REDELIVERIES_TOTAL: &str = "bus_redeliveries_total";
/// Counter of dead-lettered events, by `topic`, `group` and `class`.
pub const DEAD_LETTERS_TOTAL: &str = "bus_dead_letters_total";
/// Histogram of handler time until the verdict, in seconds, by `topic`, `group`, `outcome`.
pub const DELIVERY_DURATION: &str = "bus_delivery_duration_seconds";
/// Gauge of handlers running, by `topic` and `group`.
pub const HANDLERS_IN_FLIGHT: &str = "bus_handlers_in_flight";
/// Gauge of a JetStream consumer's undelivered messages, by `stream` and `group`.
pub const CONSUMER_PENDING: &str = "bus_consumer_pending";
/// Gauge of a JetStream consumer's unacknowledged deliveries, by `stream` and `group`.
pub const CONSUMER_ACK_PENDING: &str = "bus_consumer_ack_pending";

/// The `outcome` label of a failed publish: `closed`, `no_stream`, `too_large`, `timeout`,
/// `not_connected`, `invalid`, `codec`, `stream_mismatch` or `backend`.
pub fn publish_error_class(error: &Error) -> &'static str {
    match error {
        Error::Closed => "closed",
        Error::NoStream { .. } => "no_stream",
        Error::PayloadTooLarge { .. } => "too_large",
        Error::Timeout { .. } => "timeout",
        Error::NotConnected | Error::Connect { .. } => "not_connected",
        Error::PartialBatch { source, .. } => publish_error_class(source),
        Error::Codec { .. } => "codec",
        Error::StreamMismatch { .. } => "stream_mismatch",
        Error::Backend { .. } => "backend",
        _ => "invalid",
    }
}

/// Describes every series once (unit and help text) to the installed recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(PUBLISH_TOTAL, Unit::Count, "Publishes by topic and outcome");
    describe_histogram!(PUBLISH_DURATION, Unit::Seconds, "Publish until stored");
    describe_counter!(
        DELIVERIES_TOTAL,
        Unit::Count,
        "Deliveries handed to handlers"
    );
    describe_counter!(ACKS_TOTAL, Unit::Count, "Deliveries acknowledged");
    describe_counter!(
        REDELIVERIES_TOTAL,
        Unit::Count,
        "Retryable failures redelivered, by failed attempt"
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        Unit::Count,
        "Events dead-lettered by class"
    );
    describe_histogram!(
        DELIVERY_DURATION,
        Unit::Seconds,
        "Handler time until verdict"
    );
    describe_gauge!(HANDLERS_IN_FLIGHT, Unit::Count, "Handlers running");
    describe_gauge!(
        CONSUMER_PENDING,
        Unit::Count,
        "Consumer messages not delivered yet"
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        Unit::Count,
        "Consumer deliveries not acked"
    );
}

/// Topics whose publish series are kept registered, at most; past it the cache starts over.
const PUBLISH_CACHE_CAPACITY: usize = 4096;

/// A bus's publish series, registered once per topic (errors, which are rare, at each one).
#[derive(Default)]
pub(crate) struct PublishMetrics {
    topics: RwLock<FnvMap<Box<str>, Arc<TopicSeries>>>,
}

struct TopicSeries {
    topic: SharedString,
    ok: Counter,
    duration: Histogram,
}

impl std::fmt::Debug for PublishMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishMetrics").finish_non_exhaustive()
    }
}

impl PublishMetrics {
    /// Records one publish on `topic` that took `took` (its duration is recorded when it
    /// succeeded).
    pub(crate) fn publish(&self, topic: &str, took: Duration, outcome: Result<(), &Error>) {
        let series = self.series(topic);
        if outcome.is_ok() {
            series.duration.record(took);
        }
        series.count(outcome, 1);
    }

    /// Counts `n` publishes on `topic` with `outcome` (a batch's events).
    pub(crate) fn publishes(&self, topic: &str, outcome: Result<(), &Error>, n: usize) {
        if n > 0 {
            self.series(topic).count(outcome, n as u64);
        }
    }

    fn series(&self, topic: &str) -> Arc<TopicSeries> {
        if let Some(s) = read(&self.topics).get(topic) {
            return Arc::clone(s);
        }
        let name = SharedString::from(topic.to_owned());
        let series = Arc::new(TopicSeries {
            ok: metrics::counter!(PUBLISH_TOTAL, "topic" => name.clone(), "outcome" => "ok"),
            duration: metrics::histogram!(PUBLISH_DURATION, "topic" => name.clone()),
            topic: name,
        });
        let mut topics = write(&self.topics);
        if topics.len() >= PUBLISH_CACHE_CAPACITY {
            topics.clear();
        }
        topics.insert(topic.into(), Arc::clone(&series));
        series
    }
}

impl TopicSeries {
    fn count(&self, outcome: Result<(), &Error>, n: u64) {
        match outcome {
            Ok(()) => self.ok.increment(n),
            Err(e) => metrics::counter!(PUBLISH_TOTAL, "topic" => self.topic.clone(),
                "outcome" => publish_error_class(e))
            .increment(n),
        }
    }
}

/// One subscription's delivery series, registered once when its worker starts.
pub(crate) struct DeliveryMetrics {
    topic: SharedString,
    group: SharedString,
    deliveries: Counter,
    acks: Counter,
    in_flight: Gauge,
    ack_duration: Histogram,
    redeliver_duration: Histogram,
    dead_letter_duration: Histogram,
    /// Handlers started and not concluded, which `in_flight` counts.
    running: usize,
}

impl DeliveryMetrics {
    /// The series of the subscription on `filter` in `group`.
    pub(crate) fn new(filter: &str, group: &Arc<str>) -> Self {
        let topic = SharedString::from(filter.to_owned());
        let group = SharedString::from(group.to_string());
        let labels = |outcome: &'static str| {
            metrics::histogram!(DELIVERY_DURATION, "topic" => topic.clone(),
                "group" => group.clone(), "outcome" => outcome)
        };
        DeliveryMetrics {
            deliveries: metrics::counter!(DELIVERIES_TOTAL, "topic" => topic.clone(), "group" => group.clone()),
            acks: metrics::counter!(ACKS_TOTAL, "topic" => topic.clone(), "group" => group.clone()),
            in_flight: metrics::gauge!(HANDLERS_IN_FLIGHT, "topic" => topic.clone(), "group" => group.clone()),
            ack_duration: labels("ack"),
            redeliver_duration: labels("redeliver"),
            dead_letter_duration: labels("dead_letter"),
            running: 0,
            topic,
            group,
        }
    }

    /// `n` deliveries handed to a handler.
    pub(crate) fn started(&mut self, n: usize) {
        self.running += n;
        self.deliveries.increment(n as u64);
        self.in_flight.increment(n as f64);
    }

    /// A delivery acknowledged, `took` after its handler started.
    pub(crate) fn acked(&mut self, took: Duration) {
        self.concluded();
        self.acks.increment(1);
        self.ack_duration.record(took);
    }

    /// Delivery number `attempt` failed and is redelivered.
    pub(crate) fn redelivered(&mut self, attempt: u32, took: Duration) {
        self.concluded();
        self.redeliver_duration.record(took);
        metrics::counter!(REDELIVERIES_TOTAL, "topic" => self.topic.clone(),
            "group" => self.group.clone(), "attempt" => attempt.to_string())
        .increment(1);
    }

    /// A delivery dead-lettered with `class`.
    pub(crate) fn dead_lettered(&mut self, class: ErrorClass, took: Duration) {
        self.concluded();
        self.dead_letter_duration.record(took);
        metrics::counter!(DEAD_LETTERS_TOTAL, "topic" => self.topic.clone(),
            "group" => self.group.clone(), "class" => class.as_str())
        .increment(1);
    }

    fn concluded(&mut self) {
        self.running = self.running.saturating_sub(1);
        self.in_flight.decrement(1.0);
    }

    /// At the worker's end: handlers cancelled by the drain timeout no longer count.
    pub(crate) fn stopped(&mut self) {
        self.in_flight.decrement(self.running as f64);
        self.running = 0;
    }
}

/// A message of the subscription on `filter` in `group` that the server stopped delivering
/// (JetStream's max-deliveries advisory) and the bus dead-lettered: no handler concluded it, so
/// only the dead-letter count moves.
#[cfg(feature = "jetstream")]
pub(crate) fn dead_lettered_by_server(filter: &str, group: &str) {
    metrics::counter!(DEAD_LETTERS_TOTAL, "topic" => filter.to_owned(),
        "group" => group.to_owned(), "class" => crate::ErrorClass::MaxDeliveries.as_str())
    .increment(1);
}
