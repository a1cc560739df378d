//! What a handler receives besides its event: [`Delivery`] metadata, and the [`RawMessage`] of
//! dynamic handlers.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::{Headers, headers};

/// What a message carries besides its payload, shared by all its deliveries.
#[derive(Clone, Debug)]
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
    /// The decoded event's own id, for a message without a `Nats-Msg-Id` header.
    pub(crate) payload_event_id: Option<Arc<str>>,
}

impl Delivery {
    /// Metadata for a delivery; backends build these, tests may too.
    pub fn new(
        topic: impl Into<Arc<str>>,
        group: impl Into<Arc<str>>,
        headers: Headers,
        attempt: u32,
        stream_sequence: u64,
        published: SystemTime,
    ) -> Self {
        let meta = Meta {
            topic: topic.into(),
            headers,
            stream_sequence,
            published,
        };
        Delivery {
            meta: Arc::new(meta),
            group: group.into(),
            attempt,
            payload_event_id: None,
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

    /// The event's id: the `Nats-Msg-Id` header when the message has one, else, for a typed
    /// handler, the id in the decoded event ([`Event::event_id`](crate::Event::event_id), its
    /// `event_id` field).
    ///
    /// This bus always sends `Nats-Msg-Id` (the event's `event_id`, or a generated id for an
    /// event without one). Publishers that send no headers, such as nats.go's `js.Publish`,
    /// leave only the payload's id, which a typed handler still sees here; a `RawMessage`
    /// handler, which decodes nothing, gets `None` for such a message.
    pub fn event_id(&self) -> Option<&str> {
        self.meta
            .headers
            .get(headers::MSG_ID)
            .or(self.payload_event_id.as_deref())
    }

    /// This delivery, knowing the decoded event's own id `id` for when there is no header.
    pub(crate) fn with_payload_event_id(mut self, id: Option<&str>) -> Self {
        if let Some(id) = id
            && self.meta.headers.get(headers::MSG_ID).is_none()
        {
            self.payload_event_id = Some(Arc::from(id));
        }
        self
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
