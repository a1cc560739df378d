//! Message [`Headers`], and the names of the headers the bus writes and reads.
//!
//! | header | written by | meaning |
//! |---|---|---|
//! | [`MSG_ID`] (`Nats-Msg-Id`) | every publish | the event's `event_id`, or a generated id; the server drops a repeat inside its duplicate window |
//! | [`EVENT_TYPE`] (`Bus-Event-Type`) | typed publishes | the full protobuf name of the payload |
//! | [`TRACEPARENT`] (`traceparent`) | publishes with `trace_context` | W3C trace context |
//! | `tracestate`, `baggage` | publishes with `trace_context` and `otel`, as the global propagator writes them | W3C trace state and baggage ([`crate::trace`]) |
//! | `Bus-Dlq-*` ([`DLQ_TOPIC`] ...) | dead letters | where the event came from and why it failed |
//! | [`REPLAY_OF`] (`Bus-Replay-Of`) | `bus dlq replay` | the event is a replay of this dead letter |
//!
//! A dead letter keeps the original's headers, except that the original `Nats-Msg-Id` moves to
//! [`DLQ_MSG_ID`] and the dead letter's own `Nats-Msg-Id` is `dlq:{group}:{stream sequence}`.

use std::borrow::Cow;
use std::fmt;

use smallvec::SmallVec;

/// The message id; the server drops a second publish with the same id inside the stream's
/// duplicate window. Set from [`Event::event_id`](crate::Event::event_id) when it has one.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The full protobuf name of the payload, e.g. `cqc.events.v1.AssetCreated`.
pub const EVENT_TYPE: &str = "Bus-Event-Type";
/// W3C trace context, when tracing is on.
pub const TRACEPARENT: &str = "traceparent";
/// Dead letter: the topic the event was published on.
pub const DLQ_TOPIC: &str = "Bus-Dlq-Topic";
/// Dead letter: the event's sequence number in its stream.
pub const DLQ_STREAM_SEQ: &str = "Bus-Dlq-Stream-Seq";
/// Dead letter: how many times the event was delivered.
pub const DLQ_DELIVERIES: &str = "Bus-Dlq-Deliveries";
/// Dead letter: the subscription group that gave up on it.
pub const DLQ_GROUP: &str = "Bus-Dlq-Group";
/// Dead letter: the [`ErrorClass`](crate::ErrorClass) of the last failure.
pub const DLQ_ERROR_CLASS: &str = "Bus-Dlq-Error-Class";
/// Dead letter: the last error's message.
pub const DLQ_ERROR: &str = "Bus-Dlq-Error";
/// Dead letter: the original event's `Nats-Msg-Id`. The dead letter's own `Nats-Msg-Id` is
/// `dlq:{group}:{stream sequence}`, so a retried dead-letter publish is stored once.
pub const DLQ_MSG_ID: &str = "Bus-Dlq-Msg-Id";

/// An event republished from a dead letter (`bus dlq replay`): the dead letter's own
/// `Nats-Msg-Id` (`dlq:{group}:{stream sequence}`). The replay's `Nats-Msg-Id` is
/// `replay:{that id}`, so replaying one dead letter twice within the duplicate window stores it
/// once. A replay that is dead-lettered again keeps this header in its dead letter, which is
/// how a replay tells it from a first failure and does not replay it in a loop.
pub const REPLAY_OF: &str = "Bus-Replay-Of";

/// The header names the bus writes, as received headers are matched against.
const KNOWN: [&str; 11] = [
    MSG_ID,
    EVENT_TYPE,
    TRACEPARENT,
    DLQ_TOPIC,
    DLQ_STREAM_SEQ,
    DLQ_DELIVERIES,
    DLQ_GROUP,
    DLQ_ERROR_CLASS,
    DLQ_ERROR,
    DLQ_MSG_ID,
    REPLAY_OF,
];

/// Bytes of every message's size budget kept for the headers its dead letter adds: a publish
/// may use the server's `max_payload` less this much (payload and headers counted), so a dead
/// letter, which is the same bytes with more headers, can always be stored. On a server whose
/// `max_payload` is under 16 KiB, a quarter of it is kept instead (see [`dead_letter_headroom`]).
pub const DEAD_LETTER_HEADROOM: usize = 4 * 1024;

/// The headroom kept for dead-letter headers under `max_payload`: [`DEAD_LETTER_HEADROOM`], or
/// a quarter of a `max_payload` under 16 KiB.
///
/// ```
/// use bus::headers::dead_letter_headroom;
/// assert_eq!(dead_letter_headroom(1024 * 1024), 4096);
/// assert_eq!(dead_letter_headroom(4096), 1024);
/// ```
pub const fn dead_letter_headroom(max_payload: usize) -> usize {
    let quarter = max_payload / 4;
    if quarter < DEAD_LETTER_HEADROOM {
        quarter
    } else {
        DEAD_LETTER_HEADROOM
    }
}

/// A header name or value: a `'static` string, a short one stored inline, or a long one on the
/// heap. With the inline form and the inline entries of [`Headers`], the headers of a typical
/// event (its id and its type) cost no allocation of their own: that matters on the memory
/// backend, where headers are built on the publishing thread and dropped on another one.
#[derive(Clone)]
enum Text {
    Static(&'static str),
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

/// The longest text stored inline: a UUID (36) fits.
const INLINE: usize = 38;

impl Text {
    fn copy(s: &str) -> Text {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Text::Inline { len, bytes }
            }
            _ => Text::Heap(s.into()),
        }
    }

    /// The length in bytes, without the UTF-8 check `as_str` makes.
    fn len(&self) -> usize {
        match self {
            Text::Static(s) => s.len(),
            Text::Inline { len, .. } => usize::from(*len),
            Text::Heap(s) => s.len(),
        }
    }

    /// The text's bytes, without the UTF-8 check `as_str` makes of inline text: enough to
    /// compare header names.
    fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Static(s) => s.as_bytes(),
            Text::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Text::Heap(s) => s.as_bytes(),
        }
    }

    /// Whether this text is `name`, ignoring ASCII case (how header names compare).
    fn is_name(&self, name: &str) -> bool {
        self.as_bytes().eq_ignore_ascii_case(name.as_bytes())
    }

    fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("inline text is a copy of a whole `str`"),
            Text::Heap(s) => s,
        }
    }
}

impl From<Cow<'static, str>> for Text {
    fn from(s: Cow<'static, str>) -> Self {
        match s {
            Cow::Borrowed(s) => Text::Static(s),
            Cow::Owned(s) if s.len() <= INLINE => Text::copy(&s),
            Cow::Owned(s) => Text::Heap(s.into_boxed_str()),
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Text {}

/// Message headers: an ordered list of name/value pairs; names compare case-insensitively.
///
/// Names and values are `&'static str` or `String` (anything into `Cow<'static, str>`).
///
/// ```
/// use bus::Headers;
///
/// let mut h = Headers::new();
/// h.insert("Nats-Msg-Id", "order-42");
/// h.insert("tenant", format!("t-{}", 7));
/// assert_eq!(h.get("nats-msg-id"), Some("order-42"));
/// assert_eq!(h.iter().count(), 2);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: SmallVec<[(Text, Text); 3]>,
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers {
            entries: SmallVec::new_const(),
        }
    }

    /// No headers, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            entries: SmallVec::with_capacity(n),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.is_name(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing earlier values.
    pub fn insert(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) {
        let name = Text::from(name.into());
        self.remove(name.as_str());
        self.entries.push((name, Text::from(value.into())));
    }

    /// Adds `name` with a copy of `value`, for a name not there yet; short values cost no
    /// allocation.
    pub(crate) fn push_copy(&mut self, name: &'static str, value: &str) {
        self.entries.push((Text::Static(name), Text::copy(value)));
    }

    /// Adds `name` with `value`, for a name not there yet.
    pub(crate) fn push_static(&mut self, name: &'static str, value: &'static str) {
        self.entries.push((Text::Static(name), Text::Static(value)));
    }

    /// Adds a value for `name`, keeping earlier ones.
    pub fn append(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) {
        self.entries
            .push((Text::from(name.into()), Text::from(value.into())));
    }

    /// Adds a copy of `name` and `value`, keeping earlier values: the names the bus writes
    /// become their `'static` form, and short texts are stored inline, so the headers of a
    /// typical received event cost no allocation.
    pub(crate) fn append_copy(&mut self, name: &str, value: &str) {
        let name = match KNOWN.iter().find(|k| **k == name) {
            Some(known) => Text::Static(known),
            None => Text::copy(name),
        };
        self.entries.push((name, Text::copy(value)));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.is_name(name));
    }

    /// All entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// All entries in order, each name with its `'static` form when it has one (the header
    /// names the bus writes), so the wire encoding can skip copying it.
    pub(crate) fn iter_names_static(
        &self,
    ) -> impl Iterator<Item = (Option<&'static str>, &str, &str)> {
        self.entries.iter().map(|(n, v)| {
            let fixed = match n {
                Text::Static(s) => Some(*s),
                _ => None,
            };
            (fixed, n.as_str(), v.as_str())
        })
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Checks that every entry can travel in a NATS message: names are non-empty printable
    /// ASCII without `:`, values have no line breaks. Publishing checks this; the memory
    /// backend too, so a header that NATS would refuse fails in tests already.
    ///
    /// ```
    /// use bus::{Error, Headers};
    ///
    /// let mut h = Headers::new();
    /// h.insert("tenant", "t-7");
    /// assert!(h.validate().is_ok());
    /// h.insert("bad name", "x");
    /// assert!(matches!(h.validate(), Err(Error::InvalidHeader { .. })));
    /// ```
    ///
    /// A `Nats-Msg-Id` also may not start or end with whitespace: the server trims header
    /// values, so `" order-1"` would be taken for a repeat of `"order-1"` and dropped.
    pub fn validate(&self) -> Result<(), crate::Error> {
        for (name, value) in self.iter() {
            check_name(name)?;
            check_value(name, value)?;
            if name.eq_ignore_ascii_case(MSG_ID) {
                check_message_id(value)?;
            }
        }
        Ok(())
    }

    /// The size of these headers in a NATS message: `NATS/1.0` and one `name: value` line per
    /// entry, each ended by CRLF, and a blank line; 0 without headers. A server's
    /// `max_payload` counts it with the payload.
    pub(crate) fn wire_len(&self) -> usize {
        if self.is_empty() {
            return 0;
        }
        let lines: usize = self
            .entries
            .iter()
            .map(|(n, v)| n.len() + ": ".len() + v.len() + "\r\n".len())
            .sum();
        "NATS/1.0\r\n".len() + lines + "\r\n".len()
    }
}

/// The size of one header line, `name: value` and CRLF.
pub(crate) fn header_line_len(name: &str, value: &str) -> usize {
    name.len() + ": ".len() + value.len() + "\r\n".len()
}

/// Checks that `id` can be a `Nats-Msg-Id`: a valid header value without leading or trailing
/// whitespace (the server trims it, so two distinct ids would collide).
pub(crate) fn check_message_id(id: &str) -> Result<(), crate::Error> {
    check_value(MSG_ID, id)?;
    if id.starts_with(char::is_whitespace) || id.ends_with(char::is_whitespace) {
        return Err(crate::Error::InvalidHeader {
            name: MSG_ID.to_owned(),
            reason: "a message id (event id) cannot start or end with whitespace: the server \
                     trims it, so it would be taken for a repeat of the trimmed id and dropped",
        });
    }
    Ok(())
}

/// Checks that `name` can be a header name: non-empty printable ASCII without `:`.
pub(crate) fn check_name(name: &str) -> Result<(), crate::Error> {
    if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic() || b == b':') {
        return Err(crate::Error::InvalidHeader {
            name: name.escape_debug().to_string(),
            reason: "a header name is printable ASCII, without spaces or `:`",
        });
    }
    Ok(())
}

/// Checks that `value` can be the value of header `name`: no line breaks.
pub(crate) fn check_value(name: &str, value: &str) -> Result<(), crate::Error> {
    if value.bytes().any(|b| b == b'\n' || b == b'\r') {
        return Err(crate::Error::InvalidHeader {
            name: name.to_owned(),
            reason: "a header value cannot contain a line break (CR or LF)",
        });
    }
    Ok(())
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<N, V> FromIterator<(N, V)> for Headers
where
    N: Into<Cow<'static, str>>,
    V: Into<Cow<'static, str>>,
{
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers {
            entries: iter
                .into_iter()
                .map(|(n, v)| (Text::from(n.into()), Text::from(v.into())))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_every_length_round_trip() {
        let long = "x".repeat(INLINE + 1);
        let uuid = "6f1c2a5e-3b7d-4c8e-9a0f-1d2e3f4a5b6c";
        let mut h = Headers::new();
        h.insert("static", "value");
        h.insert(String::from("owned-short"), uuid.to_owned());
        h.insert("owned-long", long.clone());
        h.push_copy("copied", "évènement-42");
        h.append("static", String::new());
        assert!(matches!(h.entries[1].1, Text::Inline { .. }));
        assert!(matches!(h.entries[2].1, Text::Heap(_)));
        assert_eq!(h.get("STATIC"), Some("value"));
        assert_eq!(h.get("owned-short"), Some(uuid));
        assert_eq!(h.get("owned-long"), Some(long.as_str()));
        assert_eq!(h.get("copied"), Some("évènement-42"));
        assert_eq!(h.len(), 5);
        let all: Vec<_> = h.iter().collect();
        assert_eq!(all[4], ("static", ""));
        assert_eq!(h.clone(), h);
    }

    #[test]
    fn insert_replaces_and_remove_removes_every_value() {
        let mut h: Headers = [("a", "1"), ("A", "2"), ("b", "3")].into_iter().collect();
        h.insert("a", "4");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("b", "3"), ("a", "4")]);
        h.remove("B");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "4")]);
        // Equality compares text, whatever its storage.
        let mut other = Headers::new();
        other.insert(String::from("a"), String::from("4"));
        assert_eq!(h, other);
    }
}
