//! What a handler receives besides its event: [`Delivery`] metadata, [`Headers`], and the
//! [`RawMessage`] of dynamic handlers.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// Header names the bus writes and reads.
pub mod headers {
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
}

type Text = Cow<'static, str>;

/// Message headers: an ordered list of name/value pairs; names compare case-insensitively.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(Text, Text)>,
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers {
            entries: Vec::new(),
        }
    }

    /// No headers, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &**v)
    }

    /// Sets `name` to `value`, replacing earlier values.
    pub fn insert(&mut self, name: impl Into<Text>, value: impl Into<Text>) {
        let name = name.into();
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.entries.push((name, value.into()));
    }

    /// Adds a value for `name`, keeping earlier ones.
    pub fn append(&mut self, name: impl Into<Text>, value: impl Into<Text>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// All entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (&**n, &**v))
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<N: Into<Text>, V: Into<Text>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers {
            entries: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

/// What a message carries besides its payload, shared by all its deliveries.
#[derive(Debug)]
pub(crate) struct Meta {
    pub(crate) topic: Arc<str>,
    pub(crate) headers: Headers,
    pub(crate) stream_sequence: u64,
    pub(crate) published: SystemTime,
}

/// Metadata of one delivery of a message to a subscription. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub(crate) meta: Arc<Meta>,
    pub(crate) group: Arc<str>,
    pub(crate) attempt: u32,
}

impl Delivery {
    /// Metadata for a delivery; backends build these, tests may too.
    pub fn new(
        topic: impl Into<Arc<str>>,
        group: impl Into<Arc<str>>,
        headers: impl Into<Arc<Headers>>,
        attempt: u32,
        stream_sequence: u64,
        published: SystemTime,
    ) -> Self {
        let meta = Meta {
            topic: topic.into(),
            headers: Arc::unwrap_or_clone(headers.into()),
            stream_sequence,
            published,
        };
        Delivery {
            meta: Arc::new(meta),
            group: group.into(),
            attempt,
        }
    }

    /// The topic the event was published on.
    pub fn topic(&self) -> &str {
        &self.meta.topic
    }

    /// The subscription group receiving it.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The message headers.
    pub fn headers(&self) -> &Headers {
        &self.meta.headers
    }

    /// Which delivery this is, starting at 1; above 1 it is a redelivery.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The message's sequence number in its stream.
    pub fn stream_sequence(&self) -> u64 {
        self.meta.stream_sequence
    }

    /// When the message was stored.
    pub fn published(&self) -> SystemTime {
        self.meta.published
    }

    /// The event id (the `Nats-Msg-Id` header), if the publisher set one.
    pub fn event_id(&self) -> Option<&str> {
        self.meta.headers.get(headers::MSG_ID)
    }

    /// The full protobuf type name (the `Bus-Event-Type` header), if the publisher set one.
    pub fn event_type(&self) -> Option<&str> {
        self.meta.headers.get(headers::EVENT_TYPE)
    }
}

/// A message as it arrived: the undecoded payload plus its delivery metadata.
///
/// Dynamic handlers (for topics whose type they do not know) receive this; middleware sees it
/// for typed handlers too. Cloning is cheap (the payload is reference-counted).
#[derive(Clone, Debug)]
pub struct RawMessage {
    /// The payload: the raw protobuf encoding of the event.
    pub payload: Bytes,
    /// Delivery metadata.
    pub delivery: Delivery,
}

impl RawMessage {
    /// The topic the message was published on.
    pub fn topic(&self) -> &str {
        self.delivery.topic()
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        self.delivery.headers()
    }

    /// Decodes the payload as event `E`.
    pub fn decode<E: crate::Event>(&self) -> Result<E, prost::DecodeError> {
        E::decode(&self.payload[..])
    }
}
