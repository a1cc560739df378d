//! Topics: typed topic constants, subscription filters and the naming helpers.
//!
//! A *topic* is a NATS subject that an event is published on, e.g. `cqc.events.v1.asset_created`.
//! It is a list of non-empty tokens separated by `.`, with no whitespace and no wildcard.
//! A *filter* is what a subscription listens to: a topic whose tokens may also be `*` (exactly one
//! token) or, as the last token only, `>` (one or more tokens).
//!
//! ```
//! use bus::topic::{is_valid_topic, parse_event_type, topic_name, snake_case};
//!
//! assert_eq!(topic_name("asset_created"), "cqc.events.v1.asset_created");
//! assert_eq!(parse_event_type("cqc.events.v1.asset_created"), "asset_created");
//! assert_eq!(snake_case("HTTPRequestFailed"), "http_request_failed");
//! assert!(is_valid_topic("cqc.events.v1.asset_created"));
//! assert!(!is_valid_topic("cqc.events.v1.*"));
//! ```

use std::fmt;
use std::marker::PhantomData;

use crate::Error;

/// Prefix of the CQC event topics: `cqc.events.v1.`. The CQC convention, like
/// [`topic_name`] and [`parse_event_type`]; events of other packages know their topic
/// (`E::TOPIC`), and [`topic_in`] builds one for any package.
pub const DEFAULT_PREFIX: &str = "cqc.events.v1.";

/// The topic of event type `event_type` in the CQC namespace: `cqc.events.v1.{event_type}`.
/// For another package use [`topic_in`].
///
/// ```
/// assert_eq!(bus::topic::topic_name("price_updated"), "cqc.events.v1.price_updated");
/// ```
pub fn topic_name(event_type: &str) -> String {
    format!("{DEFAULT_PREFIX}{event_type}")
}

/// The default topic of event type `event_type` in protobuf package `package`:
/// `{package}.{event_type}`, as `bus-build` names topics.
///
/// ```
/// use bus::topic::{snake_case, topic_in};
/// assert_eq!(
///     topic_in("acme.shipping.events.v1", &snake_case("GPSPingV2Received")),
///     "acme.shipping.events.v1.gps_ping_v2_received"
/// );
/// ```
pub fn topic_in(package: &str, event_type: &str) -> String {
    format!("{}.{event_type}", package.trim_end_matches('.'))
}

/// The event type part of a CQC topic: `cqc.events.v1.price_updated` gives `price_updated`.
/// A topic outside the CQC namespace is returned unchanged.
///
/// ```
/// use bus::topic::parse_event_type;
/// assert_eq!(parse_event_type("cqc.events.v1.price_updated"), "price_updated");
/// assert_eq!(parse_event_type("other.topic"), "other.topic");
/// ```
pub fn parse_event_type(topic: &str) -> &str {
    topic.strip_prefix(DEFAULT_PREFIX).unwrap_or(topic)
}

/// Whether `topic` is a valid topic to publish on (a NATS subject without wildcards).
pub fn is_valid_topic(topic: &str) -> bool {
    bus_names::check_topic(topic).is_ok()
}

/// Whether `filter` is a valid subscription filter (`*` as a whole token, `>` as the last one).
pub fn is_valid_filter(filter: &str) -> bool {
    bus_names::check_filter(filter).is_ok()
}

/// `snake_case` of a protobuf message name, as used for default topics.
///
/// Acronyms stay together and digits stick to the word before them:
///
/// ```
/// use bus::topic::snake_case;
/// assert_eq!(snake_case("PriceUpdated"), "price_updated");
/// assert_eq!(snake_case("HTTPRequestFailed"), "http_request_failed");
/// assert_eq!(snake_case("OrderV2Placed"), "order_v2_placed");
/// assert_eq!(snake_case("already_snake"), "already_snake");
/// ```
pub use bus_names::snake_case;

/// Whether the (valid) filter matches the (valid) topic, with NATS wildcard semantics.
///
/// ```
/// use bus::topic::filter_matches;
/// assert!(filter_matches("cqc.events.v1.*", "cqc.events.v1.asset_created"));
/// assert!(filter_matches("cqc.>", "cqc.events.v1.asset_created"));
/// assert!(!filter_matches("cqc.*", "cqc.events.v1"));
/// ```
pub use bus_names::filter_matches;

/// Whether every topic matched by the (valid) `filter` is also matched by `subject` (a stream
/// subject or a wider filter), as JetStream requires of a consumer's filter.
///
/// ```
/// use bus::topic::filter_covers;
/// assert!(filter_covers("cqc.events.v1.>", "cqc.events.v1.*"));
/// assert!(!filter_covers("cqc.events.v1.*", "cqc.events.v1.>"));
/// ```
pub use bus_names::filter_covers;

/// Validates a topic to publish on, with an error that says how to fix it.
pub fn validate_topic(topic: &str) -> Result<(), Error> {
    bus_names::check_topic(topic).map_err(|e| Error::InvalidTopic {
        topic: topic.to_owned(),
        reason: e.reason(),
    })
}

/// Validates a subscription filter, with an error that says how to fix it.
pub fn validate_filter(filter: &str) -> Result<(), Error> {
    bus_names::check_filter(filter).map_err(|e| Error::InvalidTopic {
        topic: filter.to_owned(),
        reason: e.reason(),
    })
}

/// Validates a subscription group, with an error that says how to fix it: ASCII letters,
/// digits, `-` and `_`, at most 200 bytes (a group names a durable consumer).
///
/// ```
/// assert!(bus::topic::validate_group("risk-service").is_ok());
/// assert!(bus::topic::validate_group("risk.service").is_err());
/// ```
pub fn validate_group(group: &str) -> Result<(), Error> {
    bus_names::check_group(group).map_err(|e| Error::InvalidGroup {
        group: group.escape_debug().to_string(),
        reason: e.reason(),
    })
}

/// A topic that carries events of type `E`, checked against the NATS subject rules.
///
/// Built in a `const` so that a bad subject fails the build, and typed so that an event cannot be
/// published on another event's topic:
///
/// ```
/// use bus::Topic;
/// # #[derive(Clone, PartialEq, prost::Message)] struct PriceUpdated {}
/// const EU_PRICES: Topic<PriceUpdated> = Topic::new("cqc.events.v1.price_updated.eu");
/// assert_eq!(EU_PRICES.as_str(), "cqc.events.v1.price_updated.eu");
/// ```
///
/// ```compile_fail
/// # #[derive(Clone, PartialEq, prost::Message)] struct PriceUpdated {}
/// // A wildcard is not a topic: this fails at compile time.
/// const BAD: bus::Topic<PriceUpdated> = bus::Topic::new("cqc.events.v1.*");
/// # let _ = BAD;
/// ```
pub struct Topic<E> {
    subject: &'static str,
    _event: PhantomData<fn() -> E>,
}

impl<E> Topic<E> {
    /// A topic for events of type `E`.
    ///
    /// # Panics
    ///
    /// When `subject` is not a valid topic; in a `const` this is a compile error.
    pub const fn new(subject: &'static str) -> Self {
        if let Err(e) = bus_names::check_topic(subject) {
            panic!("{}", e.reason());
        }
        Topic {
            subject,
            _event: PhantomData,
        }
    }

    /// The subject as a string.
    pub const fn as_str(&self) -> &'static str {
        self.subject
    }
}

impl<E> Clone for Topic<E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for Topic<E> {}

impl<E> PartialEq for Topic<E> {
    fn eq(&self, other: &Self) -> bool {
        self.subject == other.subject
    }
}
impl<E> Eq for Topic<E> {}

impl<E> fmt::Debug for Topic<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", self.subject)
    }
}

impl<E> fmt::Display for Topic<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subject)
    }
}

impl<E> AsRef<str> for Topic<E> {
    fn as_ref(&self) -> &str {
        self.subject
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_helpers() {
        assert_eq!(topic_name("asset_created"), "cqc.events.v1.asset_created");
        assert_eq!(
            parse_event_type("cqc.events.v1.asset_created"),
            "asset_created"
        );
        assert_eq!(parse_event_type("orders.placed"), "orders.placed");
    }

    #[test]
    fn errors_explain() {
        let e = validate_topic("a..b").unwrap_err().to_string();
        assert!(e.contains("a..b") && e.contains("empty token"), "{e}");
        let e = validate_topic("a.*").unwrap_err().to_string();
        assert!(e.contains("concrete topic"), "{e}");
        let e = validate_group("a.b").unwrap_err().to_string();
        assert!(e.contains("a.b") && e.contains("letters, digits"), "{e}");
    }
}
