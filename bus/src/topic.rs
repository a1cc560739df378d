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

/// Prefix of the CQC event topics: `cqc.events.v1.`.
pub const DEFAULT_PREFIX: &str = "cqc.events.v1.";

/// The topic of event type `event_type` in the CQC namespace: `cqc.events.v1.{event_type}`.
///
/// ```
/// assert_eq!(bus::topic::topic_name("price_updated"), "cqc.events.v1.price_updated");
/// ```
pub fn topic_name(event_type: &str) -> String {
    format!("{DEFAULT_PREFIX}{event_type}")
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
    check_subject(topic, false).is_ok()
}

/// Whether `filter` is a valid subscription filter (`*` as a whole token, `>` as the last one).
pub fn is_valid_filter(filter: &str) -> bool {
    check_subject(filter, true).is_ok()
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
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                // An acronym ends where an upper-case letter is followed by a lower-case one:
                // `HTTPRequest` splits before `R`.
                Some(p) if p.is_uppercase() => next.is_some_and(char::is_lowercase),
                Some(_) => false,
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a subject is not a valid topic or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubjectError {
    Empty,
    EmptyToken,
    Whitespace,
    Wildcard,
    FullWildcardNotLast,
    PartialWildcard,
}

impl SubjectError {
    pub(crate) const fn reason(self) -> &'static str {
        match self {
            Self::Empty => "it is empty",
            Self::EmptyToken => {
                "it has an empty token (a leading, trailing or doubled `.`); write tokens separated by single dots"
            }
            Self::Whitespace => "it contains whitespace or a control character; remove it",
            Self::Wildcard => {
                "a published topic cannot contain the wildcards `*` or `>`; publish on a concrete topic"
            }
            Self::FullWildcardNotLast => "`>` may only be the last token of a filter",
            Self::PartialWildcard => {
                "`*` and `>` must be whole tokens (`a.*.c`, `a.>`), not part of a token"
            }
        }
    }
}

/// Checks a subject against the NATS rules; `const` so that typed topic constants are checked at
/// compile time.
pub(crate) const fn check_subject(subject: &str, wildcards: bool) -> Result<(), SubjectError> {
    let b = subject.as_bytes();
    if b.is_empty() {
        return Err(SubjectError::Empty);
    }
    let mut i = 0;
    let mut token_start = 0;
    let mut token_has_wildcard = false;
    while i <= b.len() {
        if i == b.len() || b[i] == b'.' {
            let len = i - token_start;
            if len == 0 {
                return Err(SubjectError::EmptyToken);
            }
            if token_has_wildcard {
                if !wildcards {
                    return Err(SubjectError::Wildcard);
                }
                if len > 1 {
                    return Err(SubjectError::PartialWildcard);
                }
                if b[token_start] == b'>' && i != b.len() {
                    return Err(SubjectError::FullWildcardNotLast);
                }
            }
            token_start = i + 1;
            token_has_wildcard = false;
        } else {
            let c = b[i];
            if c <= b' ' || c == 0x7f {
                return Err(SubjectError::Whitespace);
            }
            if c == b'*' || c == b'>' {
                token_has_wildcard = true;
            }
        }
        i += 1;
    }
    Ok(())
}

/// Validates a topic to publish on, with an error that says how to fix it.
pub fn validate_topic(topic: &str) -> Result<(), Error> {
    check_subject(topic, false).map_err(|e| Error::InvalidTopic {
        topic: topic.to_owned(),
        reason: e.reason(),
    })
}

/// Validates a subscription filter, with an error that says how to fix it.
pub fn validate_filter(filter: &str) -> Result<(), Error> {
    check_subject(filter, true).map_err(|e| Error::InvalidTopic {
        topic: filter.to_owned(),
        reason: e.reason(),
    })
}

/// Whether the (valid) filter matches the (valid) topic, with NATS wildcard semantics.
///
/// ```
/// use bus::topic::filter_matches;
/// assert!(filter_matches("cqc.events.v1.*", "cqc.events.v1.asset_created"));
/// assert!(filter_matches("cqc.>", "cqc.events.v1.asset_created"));
/// assert!(!filter_matches("cqc.*", "cqc.events.v1"));
/// ```
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('.');
    let mut t = topic.split('.');
    loop {
        match (f.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic matched by the (valid) `filter` is also matched by `subject` (a stream
/// subject or a wider filter), as JetStream requires of a consumer's filter.
///
/// ```
/// use bus::topic::filter_covers;
/// assert!(filter_covers("cqc.events.v1.>", "cqc.events.v1.*"));
/// assert!(!filter_covers("cqc.events.v1.*", "cqc.events.v1.>"));
/// ```
pub fn filter_covers(subject: &str, filter: &str) -> bool {
    let mut s = subject.split('.');
    let mut f = filter.split('.');
    loop {
        match (s.next(), f.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
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
        if let Err(e) = check_subject(subject, false) {
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
    fn snake_case_cases() {
        for (input, want) in [
            ("PriceUpdated", "price_updated"),
            ("AssetCreated", "asset_created"),
            ("HTTPRequestFailed", "http_request_failed"),
            ("OrderV2Placed", "order_v2_placed"),
            ("RiskAlert", "risk_alert"),
            ("A", "a"),
            ("ABC", "abc"),
            ("getHTTP", "get_http"),
            ("Already_Snake", "already_snake"),
            ("", ""),
        ] {
            assert_eq!(snake_case(input), want, "snake_case({input:?})");
        }
    }

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
    fn subject_rules() {
        for ok in ["a", "a.b", "cqc.events.v1.asset_created", "a-b.c_d.ü"] {
            assert!(is_valid_topic(ok), "{ok}");
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a b", "a\tb", "a.*", "a.>", "*", "a*",
        ] {
            assert!(!is_valid_topic(bad), "{bad:?}");
        }
        for ok in ["*", ">", "a.*", "a.>", "*.b.>", "a.*.c"] {
            assert!(is_valid_filter(ok), "{ok}");
        }
        for bad in ["a.>.b", "a*", "a.b*", "a.>x", "a..*", "a *"] {
            assert!(!is_valid_filter(bad), "{bad:?}");
        }
    }

    #[test]
    fn errors_explain() {
        let e = validate_topic("a..b").unwrap_err().to_string();
        assert!(e.contains("a..b") && e.contains("empty token"), "{e}");
        let e = validate_topic("a.*").unwrap_err().to_string();
        assert!(e.contains("concrete topic"), "{e}");
    }

    #[test]
    fn covering() {
        assert!(filter_covers(
            "cqc.events.v1.>",
            "cqc.events.v1.asset_created"
        ));
        assert!(filter_covers("cqc.events.v1.>", "cqc.events.v1.*"));
        assert!(filter_covers("cqc.events.v1.>", "cqc.events.v1.>"));
        assert!(filter_covers("cqc.>", "cqc.events.v1.*"));
        assert!(!filter_covers("cqc.events.v1.>", "cqc.>"));
        assert!(!filter_covers("cqc.events.v1.>", "cqc.events"));
        assert!(!filter_covers("cqc.events.v1.*", "cqc.events.v1.>"));
        assert!(filter_covers("cqc.events.v1.*", "cqc.events.v1.*"));
        assert!(!filter_covers("cqc.events.v1.*", "cqc.events.v1.a.b"));
        assert!(!filter_covers("dlq.>", "cqc.events.v1.a"));
    }

    #[test]
    fn matching() {
        assert!(filter_matches("a.b", "a.b"));
        assert!(!filter_matches("a.b", "a.b.c"));
        assert!(filter_matches("a.*", "a.b"));
        assert!(!filter_matches("a.*", "a.b.c"));
        assert!(filter_matches("a.>", "a.b.c"));
        assert!(!filter_matches("a.>", "a"));
        assert!(filter_matches(">", "a"));
        assert!(filter_matches("*.b.*", "x.b.y"));
    }
}
