//! [`EventBusConfig`]: which backend, where, and how delivery behaves.
//!
//! Deserializes with serde (durations are written `"250ms"`, `"30s"`, `"2m"`) and loads from
//! `BUS_*` environment variables with [`EventBusConfig::from_env`]. Build the bus with
//! [`EventBus::connect`](crate::EventBus::connect).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod env;
pub(crate) mod validate;

/// Which backend the bus runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In-process, for development and tests (the default).
    #[default]
    Memory,
    /// NATS JetStream: durable, at-least-once.
    #[serde(alias = "nats")]
    JetStream,
}

/// Everything the bus needs to know. Every field has a default, so a config file or the
/// environment only names what differs.
///
/// ```
/// use bus::{BackendKind, EventBusConfig};
///
/// let config: EventBusConfig = serde_json::from_str(r#"{
///     "backend": "jetstream",
///     "servers": ["nats://a:4222", "nats://b:4222"],
///     "consumer_name": "risk-service",
///     "ack_wait": "45s",
///     "consumer": { "backoff": ["1s", "10s"], "concurrency": 32 }
/// }"#).unwrap();
/// assert_eq!(config.backend, BackendKind::JetStream);
/// assert_eq!(config.ack_wait, std::time::Duration::from_secs(45));
/// assert_eq!(config.stream_name, "EVENTS");
/// ```
///
/// # Defaults
///
/// The defaults belong to no schema: on memory a service with any package works with no
/// configuration at all, and on JetStream it needs one setting, `stream.subjects`
/// (`BUS_STREAM_SUBJECTS`, e.g. `acme.shipping.events.v1.>`). The CQC conventions are a preset,
/// [`EventBusConfig::cqc`].
///
/// | setting | default |
/// |---|---|
/// | `backend` | `memory` |
/// | `servers` | `["nats://127.0.0.1:4222"]` |
/// | `stream_name` | `EVENTS` |
/// | `consumer_name` | `service` |
/// | `max_deliver` | `5` |
/// | `ack_wait` | `30s` |
/// | `max_ack_pending` | `1000` |
/// | `auth` | none |
/// | `tls` | none (plain TCP unless a URL says `tls://`) |
/// | `stream.subjects` | empty: every topic on memory; must be set on JetStream |
/// | `stream.storage` | `file` |
/// | `stream.replicas` | `1` |
/// | `stream.max_age` | `0s` (forever) |
/// | `stream.duplicate_window` | `2m` |
/// | `stream.retention` | `limits` |
/// | `stream.management` | `create_or_verify` |
/// | `consumer.backoff` | `1s, 5s, 30s` |
/// | `consumer.concurrency` | `16` |
/// | `consumer.handler_timeout` | `60s` |
/// | `consumer.start` | `new` (see [`StartPosition`]) |
/// | `dead_letter.stream_name` | `EVENTS_DLQ` |
/// | `dead_letter.subject_prefix` | `dlq` |
/// | `dead_letter.storage` | `file` |
/// | `dead_letter.replicas` | `1` |
/// | `dead_letter.max_age` | `0s` (forever) |
/// | `publish_timeout` | `5s` |
/// | `drain_timeout` | `30s` |
/// | `memory_queue_capacity` | `1024` |
/// | `trace_context` | `false` |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EventBusConfig {
    /// The backend.
    pub backend: BackendKind,
    /// NATS server URLs; all are used (the client picks and fails over among them).
    pub servers: Vec<String>,
    /// Name of the events stream.
    pub stream_name: String,
    /// Name of this service; the default group of a handler is `{consumer_name}-{handler}`.
    pub consumer_name: String,
    /// Deliveries of a message before a retryable failure is dead-lettered.
    pub max_deliver: u32,
    /// How long the server waits for an acknowledgement before redelivering.
    #[serde(with = "duration")]
    pub ack_wait: Duration,
    /// Messages delivered but unacknowledged per subscription, at most.
    pub max_ack_pending: usize,
    /// Credentials.
    pub auth: Auth,
    /// TLS; `None` means plain TCP unless a server URL says `tls://`.
    pub tls: Option<Tls>,
    /// Settings of the events stream.
    pub stream: StreamSettings,
    /// Default settings of subscriptions.
    pub consumer: ConsumerSettings,
    /// Where dead letters go.
    pub dead_letter: DeadLetterSettings,
    /// How long a publish waits for the stream's acknowledgement (or, in memory, for queue room).
    #[serde(with = "duration")]
    pub publish_timeout: Duration,
    /// How long `close()` waits for in-flight handlers before giving up on them.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// Capacity of each subscription group's queue in the memory backend.
    pub memory_queue_capacity: usize,
    /// Send W3C trace context with every event: events published by a handler continue the
    /// trace of the event it handles. With the `otel` feature, also OpenTelemetry spans for
    /// publishes and deliveries. See [`crate::trace`].
    pub trace_context: bool,
}

impl Default for EventBusConfig {
    fn default() -> Self {
        EventBusConfig {
            backend: BackendKind::Memory,
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream_name: "EVENTS".into(),
            consumer_name: "service".into(),
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            auth: Auth::default(),
            tls: None,
            stream: StreamSettings::default(),
            consumer: ConsumerSettings::default(),
            dead_letter: DeadLetterSettings::default(),
            publish_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            memory_queue_capacity: 1024,
            trace_context: false,
        }
    }
}

/// Credentials for NATS; set at most one method.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Auth {
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// NKey seed (`SU...`).
    pub nkey: Option<String>,
    /// Path of a `.creds` file (JWT plus NKey seed).
    pub credentials_file: Option<PathBuf>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Auth")
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("token", &secret(&self.token))
            .field("nkey", &secret(&self.nkey))
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

/// TLS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Tls {
    /// Require TLS even if the server does not ask for it.
    pub required: bool,
    /// CA certificate (PEM) to trust besides the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS.
    pub key_file: Option<PathBuf>,
}

/// Where a stream keeps its messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (survives a server restart).
    #[default]
    File,
    /// In memory.
    Memory,
}

/// How a stream keeps its messages, as JetStream's `retention`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until the stream's limits (`max_age`, size) drop them, whoever consumed them: every
    /// group sees every event, and a new group can start at the beginning (the default).
    #[default]
    Limits,
    /// Kept until every consumer that existed when it arrived has acknowledged it: groups still
    /// each get every event, but an event published while no group exists is dropped at once,
    /// and a new group finds only what the existing groups have not yet acknowledged.
    Interest,
    /// Removed as soon as one consumer acknowledges it: a work queue. Only one group can consume
    /// a subject; a second group whose filter overlaps another's is refused with an error that
    /// says so. Its groups start at the first stored event (`start = new` becomes `all`).
    #[serde(alias = "work_queue")]
    WorkQueue,
}

impl Retention {
    /// The value JetStream uses: `limits`, `interest`, `workqueue`.
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::Limits => "limits",
            Retention::Interest => "interest",
            Retention::WorkQueue => "workqueue",
        }
    }
}

/// What the bus may do to its streams at connect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamManagement {
    /// Create a missing stream; on an existing one add missing subjects and report any other
    /// difference as [`Error::StreamMismatch`](crate::Error::StreamMismatch) (the default).
    #[default]
    CreateOrVerify,
    /// The streams must exist and match the configuration; nothing is created or changed.
    Verify,
    /// Leave the streams alone: no stream request at all. For a service without stream-admin
    /// permission that only publishes and consumes on streams another team manages; the
    /// configured subjects are taken as what the streams capture.
    None,
}

/// Settings of the events stream. An existing stream is never reset: missing subjects are added,
/// any other difference is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StreamSettings {
    /// Subjects the stream captures; publishing elsewhere is an error. Empty (the default)
    /// means every topic outside the dead-letter subjects on memory, and is an error on
    /// JetStream, whose stream must be told what to capture (`acme.shipping.events.v1.>`).
    pub subjects: Vec<String>,
    /// Storage.
    pub storage: Storage,
    /// Replicas (1 for a single server, 3 for a cluster).
    pub replicas: usize,
    /// Oldest message kept; `0s` keeps them forever.
    #[serde(with = "duration")]
    pub max_age: Duration,
    /// Window in which a second publish with the same `Nats-Msg-Id` is dropped.
    #[serde(with = "duration")]
    pub duplicate_window: Duration,
    /// Retention of the events stream (default `limits`); see [`Retention`] for what each
    /// means for groups.
    pub retention: Retention,
    /// What the bus may do to both streams at connect (default `create_or_verify`).
    pub management: StreamManagement,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            retention: Retention::Limits,
            management: StreamManagement::CreateOrVerify,
            subjects: Vec::new(),
            storage: Storage::File,
            replicas: 1,
            max_age: Duration::ZERO,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// Where a new group starts reading the stream: a new durable consumer's `deliver_policy`.
///
/// It applies when the group's consumer is created; an existing consumer keeps its position.
/// Written `all`, `new`, `last`, `sequence:42` or `time:2024-05-01T12:00:00Z` (RFC 3339) in a
/// configuration file, `BUS_START` and `#[event_handler(start = "...")]`.
///
/// The default is `new`: a group added to a running system does not replay history. Go's
/// nats.go `PullSubscribe` starts at the beginning (`all`); set `all` to do the same, for
/// instance for a group that must see events stored before it was deployed.
///
/// The memory backend keeps no history, so it accepts only `new` and refuses the others with
/// an error (rather than starting somewhere else silently).
///
/// ```
/// use bus::config::StartPosition;
/// assert_eq!("all".parse::<StartPosition>().unwrap(), StartPosition::All);
/// assert_eq!("sequence:42".parse::<StartPosition>().unwrap(), StartPosition::Sequence(42));
/// assert!("tomorrow".parse::<StartPosition>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartPosition {
    /// Every event the stream holds.
    All,
    /// Only events published after the group's consumer is created (the default).
    #[default]
    New,
    /// The last event the stream holds on the filter, then everything after it.
    Last,
    /// From this stream sequence on.
    Sequence(u64),
    /// From the first event stored at or after this time.
    Time(std::time::SystemTime),
}

impl std::str::FromStr for StartPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let expected = "expected `all`, `new`, `last`, `sequence:N` (N >= 1) or \
                        `time:RFC3339` (e.g. `time:2024-05-01T12:00:00Z`)";
        match s.to_ascii_lowercase().as_str() {
            "all" => return Ok(StartPosition::All),
            "new" => return Ok(StartPosition::New),
            "last" => return Ok(StartPosition::Last),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("sequence:") {
            return match n.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(StartPosition::Sequence(n)),
                _ => Err(format!("`{s}`: {expected}")),
            };
        }
        if let Some(t) = s.strip_prefix("time:") {
            return humantime::parse_rfc3339_weak(t.trim())
                .map(StartPosition::Time)
                .map_err(|e| format!("`{s}`: {e}; {expected}"));
        }
        Err(format!("`{s}`: {expected}"))
    }
}

impl fmt::Display for StartPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPosition::All => f.write_str("all"),
            StartPosition::New => f.write_str("new"),
            StartPosition::Last => f.write_str("last"),
            StartPosition::Sequence(n) => write!(f, "sequence:{n}"),
            StartPosition::Time(t) => write!(f, "time:{}", humantime::format_rfc3339(*t)),
        }
    }
}

impl Serialize for StartPosition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StartPosition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Default delivery settings of subscriptions; a handler may override them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsumerSettings {
    /// Redelivery delays after retryable failures; the last one repeats. Default 1s, 5s, 30s.
    #[serde(with = "durations")]
    pub backoff: Vec<Duration>,
    /// Handlers running at once per subscription. Default 16.
    pub concurrency: usize,
    /// The longest one delivery may run (the whole middleware chain and the handler); then the
    /// handler is cancelled and the event redelivered, as after a retryable
    /// [`ErrorClass::Timeout`](crate::ErrorClass::Timeout) error. Default 60 s; `None`
    /// (`"off"`) lets a handler run forever, holding its slot (and `close()` then waits the
    /// whole `drain_timeout` for it). Set it above what `Retry` and `Timeout` middleware need.
    #[serde(with = "optional_duration")]
    pub handler_timeout: Option<Duration>,
    /// Where a new group starts (default `new`); see [`StartPosition`].
    pub start: StartPosition,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            start: StartPosition::New,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            concurrency: 16,
            handler_timeout: Some(Duration::from_secs(60)),
        }
    }
}

/// Where dead letters go: subject `{subject_prefix}.{original topic}` in stream `stream_name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DeadLetterSettings {
    /// Name of the dead-letter stream.
    pub stream_name: String,
    /// First token(s) of dead-letter subjects.
    pub subject_prefix: String,
    /// Storage of the dead-letter stream, independent of the events stream's (default `file`,
    /// so dead letters survive a server restart even beside a memory events stream).
    pub storage: Storage,
    /// Replicas of the dead-letter stream (default 1).
    pub replicas: usize,
    /// Oldest dead letter kept; `0s` (the default) keeps them until handled.
    #[serde(with = "duration")]
    pub max_age: Duration,
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        DeadLetterSettings {
            stream_name: "EVENTS_DLQ".into(),
            subject_prefix: "dlq".into(),
            storage: Storage::File,
            replicas: 1,
            max_age: Duration::ZERO,
        }
    }
}

impl DeadLetterSettings {
    /// The dead-letter subject of `topic`.
    ///
    /// ```
    /// let dl = bus::config::DeadLetterSettings::default();
    /// assert_eq!(dl.subject_for("cqc.events.v1.asset_created"), "dlq.cqc.events.v1.asset_created");
    /// ```
    pub fn subject_for(&self, topic: &str) -> String {
        format!("{}.{topic}", self.subject_prefix)
    }

    /// The filter that captures every dead letter: `{subject_prefix}.>`.
    pub fn filter(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

/// The subjects of the CQC events stream: `cqc.events.v1.>`.
pub const CQC_SUBJECTS: &str = "cqc.events.v1.>";

impl EventBusConfig {
    /// The CQC conventions on top of the defaults: stream `CQC_EVENTS` capturing
    /// `cqc.events.v1.>`, dead letters in `CQC_EVENTS_DLQ`. What the `cqc` crate's services and
    /// the examples use; the Go services of that ecosystem use the same subjects.
    ///
    /// ```
    /// let config = bus::EventBusConfig::cqc();
    /// assert_eq!(config.stream_name, "CQC_EVENTS");
    /// assert_eq!(config.stream.subjects, ["cqc.events.v1.>"]);
    /// assert_eq!(config.dead_letter.stream_name, "CQC_EVENTS_DLQ");
    /// ```
    pub fn cqc() -> Self {
        Self::default().with_cqc_conventions()
    }

    /// This configuration with the CQC stream names and subjects (see [`cqc`](Self::cqc)),
    /// everything else kept: `EventBusConfig::jetstream(urls).with_cqc_conventions()`.
    pub fn with_cqc_conventions(mut self) -> Self {
        self.stream_name = "CQC_EVENTS".into();
        self.stream.subjects = vec![CQC_SUBJECTS.into()];
        self.dead_letter.stream_name = "CQC_EVENTS_DLQ".into();
        self
    }

    /// A configuration for the in-memory backend with defaults.
    pub fn memory() -> Self {
        Self::default()
    }

    /// A configuration for JetStream at `servers`, defaults otherwise.
    pub fn jetstream<S: Into<String>>(servers: impl IntoIterator<Item = S>) -> Self {
        EventBusConfig {
            backend: BackendKind::JetStream,
            servers: servers.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::env::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod durations {
    use std::time::Duration;

    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(ds.len()))?;
        for d in ds {
            seq.serialize_element(&humantime::format_duration(*d).to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| super::env::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_str("off"),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        super::env::parse_optional_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::Error;

    fn from(vars: &[(&str, &str)]) -> Result<EventBusConfig, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        EventBusConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn env_overrides_defaults() {
        let c = from(&[
            ("BUS_BACKEND", "jetstream"),
            ("BUS_SERVERS", "nats://a:4222, nats://b:4222"),
            ("BUS_ACK_WAIT", "45s"),
            ("BUS_BACKOFF", "1s,10s"),
            ("BUS_TOKEN", "s3cret"),
            ("BUS_TLS_CA_FILE", "/etc/ca.pem"),
        ])
        .unwrap();
        assert_eq!(c.backend, BackendKind::JetStream);
        assert_eq!(c.servers, ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(c.ack_wait, Duration::from_secs(45));
        assert_eq!(
            c.consumer.backoff,
            [Duration::from_secs(1), Duration::from_secs(10)]
        );
        assert_eq!(
            c.tls.unwrap().ca_file.unwrap(),
            PathBuf::from("/etc/ca.pem")
        );
        assert_eq!(c.stream_name, "EVENTS");
        assert!(!format!("{:?}", c.auth).contains("s3cret"));
    }

    #[test]
    fn env_errors_name_the_variable() {
        let e = from(&[("BUS_ACK_WAIT", "soon")]).unwrap_err().to_string();
        assert!(e.contains("BUS_ACK_WAIT") && e.contains("30s"), "{e}");
        let e = from(&[("BUS_BACKEND", "kafka")]).unwrap_err().to_string();
        assert!(e.contains("memory") && e.contains("jetstream"), "{e}");
    }

    #[test]
    fn env_applies_over_a_file() {
        let file: EventBusConfig = serde_json::from_str(
            r#"{ "stream_name": "ORDERS", "max_deliver": 7, "tls": { "ca_file": "/ca.pem" } }"#,
        )
        .unwrap();
        let map: HashMap<String, String> = [("BUS_MAX_DELIVER", "9"), ("BUS_TLS_REQUIRED", "true")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let c = file.with_lookup(|k| map.get(k).cloned()).unwrap();
        assert_eq!(c.stream_name, "ORDERS", "kept from the file");
        assert_eq!(c.max_deliver, 9, "the environment wins");
        let tls = c.tls.unwrap();
        assert!(tls.required);
        assert_eq!(tls.ca_file.unwrap(), PathBuf::from("/ca.pem"));
        let c = EventBusConfig {
            tls: Some(Tls::default()),
            ..Default::default()
        }
        .with_lookup(|_| None)
        .unwrap();
        assert_eq!(c.tls, Some(Tls::default()), "a file's TLS section is kept");
    }

    #[test]
    fn serde_round_trip() {
        let c = EventBusConfig::default();
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains(r#""ack_wait":"30s""#), "{json}");
        let back: EventBusConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let e = serde_json::from_str::<EventBusConfig>(r#"{"ack_wiat":"1s"}"#).unwrap_err();
        assert!(e.to_string().contains("ack_wiat"), "{e}");
    }

    #[test]
    fn handler_timeout_can_be_off() {
        let c = from(&[("BUS_HANDLER_TIMEOUT", "off")]).unwrap();
        assert_eq!(c.consumer.handler_timeout, None);
        let c = from(&[("BUS_HANDLER_TIMEOUT", "90s")]).unwrap();
        assert_eq!(c.consumer.handler_timeout, Some(Duration::from_secs(90)));
        let json = serde_json::to_string(&EventBusConfig {
            consumer: ConsumerSettings {
                handler_timeout: None,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        assert!(json.contains(r#""handler_timeout":"off""#), "{json}");
        let back: EventBusConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.consumer.handler_timeout, None);
    }
}
