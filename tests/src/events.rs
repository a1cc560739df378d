//! Small hand-written events for backend tests, independent of the generated CQC schema.

use bus::{Event, Topic};

/// A test event with an id, a sequence number and a note.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    /// The event id; becomes `Nats-Msg-Id`.
    #[prost(string, tag = "1")]
    pub event_id: String,
    /// A sequence number chosen by the test.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// Free text.
    #[prost(string, tag = "3")]
    pub note: String,
}

impl Event for Ping {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.conformance_ping");
    const EVENT_TYPE: &'static str = "conformance_ping";
    const FULL_NAME: &'static str = "cqc.events.v1.ConformancePing";
    fn event_id(&self) -> Option<&str> {
        Some(self.event_id.as_str()).filter(|id| !id.is_empty())
    }
}

impl Ping {
    /// A ping with sequence `seq` and event id `ping-{seq}`.
    pub fn new(seq: u64) -> Self {
        Ping {
            event_id: format!("ping-{seq}"),
            seq,
            note: String::new(),
        }
    }
}

/// A second event type, to show typed topics keep types apart.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pong {
    /// A sequence number chosen by the test.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
}

impl Event for Pong {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.conformance_pong");
    const EVENT_TYPE: &'static str = "conformance_pong";
    const FULL_NAME: &'static str = "cqc.events.v1.ConformancePong";
}
