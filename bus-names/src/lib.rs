//! The naming rules of the `bus` crates, in one place: what a topic, a subscription filter, a
//! group and a stream name may be, how a durable consumer is named, and how a message name
//! becomes a topic.
//!
//! The runtime (`bus`), the `#[event_handler]` macro (`bus-macros`) and the build-script helper
//! (`bus-build`) all call these functions, so a topic or group that one of them accepts is
//! accepted by the others. The subject checks are `const fn`, so a typed topic constant and a
//! macro's topic literal are checked at compile time by the very same code.
//!
//! ```
//! use bus_names::{check_filter, check_group, check_topic, snake_case};
//!
//! assert!(check_topic("cqc.events.v1.asset_created").is_ok());
//! assert!(check_topic("cqc.events.v1.*").is_err());
//! assert!(check_filter("cqc.events.v1.*").is_ok());
//! assert!(check_group("risk-service_1").is_ok());
//! assert!(check_group("risk.service").is_err());
//! assert_eq!(snake_case("HTTPRequestFailed"), "http_request_failed");
//! ```

#![no_std]

extern crate alloc;

use alloc::string::String;
use core::fmt;

/// Why a subject is not a valid topic or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject is empty.
    Empty,
    /// A token is empty (a leading, trailing or doubled `.`).
    EmptyToken,
    /// Whitespace or a control character.
    Whitespace,
    /// A wildcard in a topic that is published on.
    Wildcard,
    /// `>` before the last token.
    FullWildcardNotLast,
    /// `*` or `>` as part of a token.
    PartialWildcard,
    /// Longer than [`MAX_SUBJECT_LEN`] bytes.
    TooLong,
}

impl SubjectError {
    /// Which rule is broken and how to fix it.
    pub const fn reason(self) -> &'static str {
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
            Self::TooLong => {
                "it is longer than 1024 bytes, which would not fit a NATS protocol line with its dead-letter prefix; use a shorter subject"
            }
        }
    }
}

impl fmt::Display for SubjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Checks a topic to publish on: a NATS subject of non-empty tokens separated by `.`, with no
/// whitespace and no wildcard.
pub const fn check_topic(topic: &str) -> Result<(), SubjectError> {
    check_subject(topic, false)
}

/// Checks a subscription filter: a topic whose tokens may also be `*` (exactly one token) or,
/// as the last token only, `>` (one or more tokens).
pub const fn check_filter(filter: &str) -> Result<(), SubjectError> {
    check_subject(filter, true)
}

/// The longest topic or filter, in bytes. A NATS server takes protocol lines of 4 KiB by
/// default (`max_control_line`); a subject this long still fits one with the dead-letter prefix,
/// a reply subject and the lengths.
pub const MAX_SUBJECT_LEN: usize = 1024;

const fn check_subject(subject: &str, wildcards: bool) -> Result<(), SubjectError> {
    let b = subject.as_bytes();
    if b.is_empty() {
        return Err(SubjectError::Empty);
    }
    if b.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong);
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

/// Whether the (valid) `filter` matches the (valid) `topic`, with NATS wildcard semantics.
///
/// ```
/// use bus_names::filter_matches;
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

/// Whether every topic that the (valid) `filter` matches is also matched by `subject` (a stream
/// subject or a wider filter), as JetStream requires of a consumer's filter. A topic is a filter
/// without wildcards, so this also answers "does this stream subject capture this topic".
///
/// ```
/// use bus_names::filter_covers;
/// assert!(filter_covers("cqc.events.v1.>", "cqc.events.v1.*"));
/// assert!(filter_covers("cqc.events.v1.>", "cqc.events.v1.asset_created"));
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

/// Whether some topic matches both (valid) filters `a` and `b`: two streams with overlapping
/// subjects cannot exist side by side.
///
/// ```
/// use bus_names::filters_overlap;
/// assert!(filters_overlap("cqc.>", "cqc.events.v1.*"));
/// assert!(filters_overlap("a.*.c", "a.b.*"));
/// assert!(!filters_overlap("dlq.>", "cqc.events.v1.>"));
/// assert!(!filters_overlap("a.*", "a.b.c"));
/// ```
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let mut a = a.split('.');
    let mut b = b.split('.');
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether `filter` is `topic` itself or a subject under it (`topic.x`, `topic.*`, `topic.>`),
/// so it can only match topics that carry `topic`'s event type. `const`, for compile-time checks.
///
/// ```
/// use bus_names::filter_within;
/// assert!(filter_within("shop.v1.order_placed.eu", "shop.v1.order_placed"));
/// assert!(!filter_within("shop.v1.order_placed_eu", "shop.v1.order_placed"));
/// ```
pub const fn filter_within(filter: &str, topic: &str) -> bool {
    let (f, t) = (filter.as_bytes(), topic.as_bytes());
    if f.len() < t.len() {
        return false;
    }
    let mut i = 0;
    while i < t.len() {
        if f[i] != t[i] {
            return false;
        }
        i += 1;
    }
    f.len() == t.len() || f[t.len()] == b'.'
}

/// The longest group, in bytes.
pub const GROUP_MAX: usize = 200;

/// Why a group name is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// The group is empty.
    Empty,
    /// Longer than [`GROUP_MAX`] bytes.
    TooLong,
    /// A character other than an ASCII letter, digit, `-` or `_`.
    Character,
}

impl GroupError {
    /// Which rule is broken and how to fix it.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Empty => "it is empty; name the group with letters, digits, `-` and `_`",
            Self::TooLong => "it is longer than 200 bytes; use a shorter name",
            Self::Character => {
                "a group names a durable consumer, so it may only contain ASCII letters, digits, `-` and `_` (no `.`, wildcards, whitespace or slashes)"
            }
        }
    }
}

impl fmt::Display for GroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Checks a subscription group (and so a consumer name part): 1 to [`GROUP_MAX`] bytes of ASCII
/// letters, digits, `-` and `_`. The default group `{consumer_name}-{handler}` follows the same
/// rule, so the configured consumer name and handler names do too.
pub const fn check_group(group: &str) -> Result<(), GroupError> {
    let b = group.as_bytes();
    if b.is_empty() {
        return Err(GroupError::Empty);
    }
    if b.len() > GROUP_MAX {
        return Err(GroupError::TooLong);
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
            return Err(GroupError::Character);
        }
        i += 1;
    }
    Ok(())
}

/// Why a stream name is not valid.
pub const STREAM_NAME_RULE: &str = "a stream name is non-empty and has no `.`, `*`, `>`, whitespace or slashes; use letters, digits, `-` and `_`";

/// Whether `name` can name a JetStream stream.
pub const fn is_valid_stream_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c <= b' ' || c == 0x7f || matches!(c, b'.' | b'*' | b'>' | b'/' | b'\\') {
            return false;
        }
        i += 1;
    }
    true
}

/// Longest part of a durable consumer name taken from the group; a hash follows it.
const READABLE_MAX: usize = 64;

/// The durable consumer name of the (valid, see [`check_group`]) `group` on `filter`: the group
/// (its first 64 bytes), `_`, and 16 hex digits of a stable 64-bit FNV-1a hash of the exact
/// group and filter.
///
/// So the name is the same in every process and release, and the same group on two filters gets
/// two consumers, as a subscription is a (filter, group) pair.
///
/// ```
/// let name = bus_names::durable_name("billing-on_order", "cqc.events.v1.order_placed");
/// assert!(name.starts_with("billing-on_order_"));
/// assert_ne!(name, bus_names::durable_name("billing-on_order", "cqc.events.v1.>"));
/// ```
pub fn durable_name(group: &str, filter: &str) -> String {
    let mut hash = Fnv::new();
    hash.write(group.as_bytes());
    hash.write(&[0]);
    hash.write(filter.as_bytes());
    // A valid group is ASCII, so any byte index is a char boundary.
    let readable = &group[..group.len().min(READABLE_MAX)];
    alloc::format!("{readable}_{:016x}", hash.0)
}

/// FNV-1a, 64 bits: tiny and stable across Rust releases (unlike `DefaultHasher`).
struct Fnv(u64);

impl Fnv {
    const fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// `snake_case` of a protobuf message name, as used for default topics.
///
/// Acronyms stay together and digits stick to the word before them:
///
/// ```
/// use bus_names::snake_case;
/// assert_eq!(snake_case("PriceUpdated"), "price_updated");
/// assert_eq!(snake_case("HTTPRequestFailed"), "http_request_failed");
/// assert_eq!(snake_case("GPSPingV2Received"), "gps_ping_v2_received");
/// assert_eq!(snake_case("already_snake"), "already_snake");
/// ```
pub fn snake_case(name: &str) -> String {
    let chars: alloc::vec::Vec<char> = name.chars().collect();
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

/// The table every entry point is tested against (the runtime builder, the macro's literals and
/// the build's topic option), so the crates cannot drift apart. Not API.
#[doc(hidden)]
pub mod cases {
    /// `(subject, valid as a topic, valid as a filter)`.
    pub const SUBJECTS: &[(&str, bool, bool)] = &[
        ("a", true, true),
        ("a.b", true, true),
        ("cqc.events.v1.asset_created", true, true),
        ("a-b.c_d.ü", true, true),
        ("shop.v1.order_placed.eu", true, true),
        ("*", false, true),
        (">", false, true),
        ("a.*", false, true),
        ("a.>", false, true),
        ("*.b.>", false, true),
        ("a.*.c", false, true),
        ("", false, false),
        (".", false, false),
        ("a.", false, false),
        (".a", false, false),
        ("a..b", false, false),
        ("a b", false, false),
        ("a\tb", false, false),
        ("a\u{7f}b", false, false),
        ("a*", false, false),
        ("a.b*", false, false),
        ("a.>.b", false, false),
        ("a.>x", false, false),
        ("a..*", false, false),
        (LONG_OK, true, true),
        (TOO_LONG, false, false),
    ];

    /// A subject of exactly [`MAX_SUBJECT_LEN`](crate::MAX_SUBJECT_LEN) bytes.
    pub const LONG_OK: &str = {
        const B: [u8; crate::MAX_SUBJECT_LEN] = long(crate::MAX_SUBJECT_LEN);
        match core::str::from_utf8(&B) {
            Ok(s) => s,
            Err(_) => panic!("ASCII"),
        }
    };

    /// A subject one byte over the limit.
    pub const TOO_LONG: &str = {
        const B: [u8; crate::MAX_SUBJECT_LEN + 1] = long(crate::MAX_SUBJECT_LEN + 1);
        match core::str::from_utf8(&B) {
            Ok(s) => s,
            Err(_) => panic!("ASCII"),
        }
    };

    /// `a.a.a...` of `N` bytes (`N` odd or even: it ends with `a`).
    const fn long<const N: usize>(n: usize) -> [u8; N] {
        let mut b = [b'a'; N];
        let mut i = 1;
        while i + 1 < n {
            b[i] = b'.';
            i += 2;
        }
        b
    }

    /// `(group, valid)`.
    pub const GROUPS: &[(&str, bool)] = &[
        ("risk", true),
        ("risk-service_1", true),
        ("RISK", true),
        ("", false),
        ("a.b", false),
        ("a*", false),
        ("a>", false),
        ("a b", false),
        ("a/b", false),
        ("a\\b", false),
        ("a:b", false),
        ("é", false),
        ("a\nb", false),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds() {
        for &(subject, topic, filter) in cases::SUBJECTS {
            assert_eq!(check_topic(subject).is_ok(), topic, "topic {subject:?}");
            assert_eq!(check_filter(subject).is_ok(), filter, "filter {subject:?}");
        }
        for &(group, valid) in cases::GROUPS {
            assert_eq!(check_group(group).is_ok(), valid, "group {group:?}");
        }
        assert!(check_group(&"x".repeat(GROUP_MAX)).is_ok());
        assert_eq!(
            check_group(&"x".repeat(GROUP_MAX + 1)),
            Err(GroupError::TooLong)
        );
    }

    #[test]
    fn snake_case_cases() {
        for (input, want) in [
            ("PriceUpdated", "price_updated"),
            ("AssetCreated", "asset_created"),
            ("HTTPRequestFailed", "http_request_failed"),
            ("OrderV2Placed", "order_v2_placed"),
            ("GPSPingV2Received", "gps_ping_v2_received"),
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
    fn overlaps() {
        for (a, b, want) in [
            ("cqc.>", "cqc.events.v1.>", true),
            ("cqc.events.v1.>", "dlq.>", false),
            ("dlq.>", "dlq.cqc.events.v1.x", true),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("*.b", "a.*", true),
            ("a.b", "a.c", false),
            (">", "x", true),
        ] {
            assert_eq!(filters_overlap(a, b), want, "{a} / {b}");
            assert_eq!(filters_overlap(b, a), want, "{b} / {a}");
        }
    }

    #[test]
    fn within() {
        assert!(filter_within("a.b", "a.b"));
        assert!(filter_within("a.b.>", "a.b"));
        assert!(!filter_within("a.bc", "a.b"));
        assert!(!filter_within("a", "a.b"));
    }

    #[test]
    fn durable_names_are_pinned_and_distinct() {
        let a = durable_name("svc-handler", "cqc.events.v1.>");
        // Pinned: a change here renames every durable consumer in production.
        assert_eq!(a, "svc-handler_a23914fd091b4757");
        assert_ne!(a, durable_name("svc-handler", "cqc.events.v1.*"));
        let long = durable_name(&"x".repeat(150), "a");
        assert_eq!(long.len(), 64 + 17);
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn stream_names() {
        assert!(is_valid_stream_name("CQC_EVENTS"));
        for bad in ["", "a.b", "a b", "a*", "a>", "a/b", "a\\b"] {
            assert!(!is_valid_stream_name(bad), "{bad:?}");
        }
    }
}
