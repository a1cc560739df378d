//! [`EventBusConfig`]: which backend, where, and how delivery behaves.
//!
//! Deserializes with serde (durations are written `"250ms"`, `"30s"`, `"2m"`) and loads from
//! `BUS_*` environment variables with [`EventBusConfig::from_env`]. Build the bus with
//! [`EventBus::connect`](crate::EventBus::connect).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

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
/// assert_eq!(config.stream_name, "CQC_EVENTS");
/// ```
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
    /// Send a W3C `traceparent` with every event: events published by a handler continue the
    /// trace of the event it handles, others start a new trace.
    pub trace_context: bool,
}

impl Default for EventBusConfig {
    fn default() -> Self {
        EventBusConfig {
            backend: BackendKind::Memory,
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream_name: "CQC_EVENTS".into(),
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

/// Settings of the events stream. An existing stream is never reset: missing subjects are added,
/// any other difference is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct StreamSettings {
    /// Subjects the stream captures; publishing elsewhere is an error.
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
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            subjects: vec!["cqc.events.v1.>".into()],
            storage: Storage::File,
            replicas: 1,
            max_age: Duration::ZERO,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// Default delivery settings of subscriptions; a handler may override them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsumerSettings {
    /// Redelivery delays after retryable failures; the last one repeats.
    #[serde(with = "durations")]
    pub backoff: Vec<Duration>,
    /// Handlers running at once per subscription.
    pub concurrency: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        ConsumerSettings {
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            concurrency: 16,
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
}

impl Default for DeadLetterSettings {
    fn default() -> Self {
        DeadLetterSettings {
            stream_name: "CQC_EVENTS_DLQ".into(),
            subject_prefix: "dlq".into(),
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

impl EventBusConfig {
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

    /// Reads `BUS_*` environment variables over the defaults.
    ///
    /// | variable | field | example |
    /// |---|---|---|
    /// | `BUS_BACKEND` | `backend` | `memory`, `jetstream` |
    /// | `BUS_SERVERS` | `servers` | `nats://a:4222,nats://b:4222` |
    /// | `BUS_STREAM_NAME` | `stream_name` | `CQC_EVENTS` |
    /// | `BUS_CONSUMER_NAME` | `consumer_name` | `risk-service` |
    /// | `BUS_MAX_DELIVER` | `max_deliver` | `5` |
    /// | `BUS_ACK_WAIT` | `ack_wait` | `30s` |
    /// | `BUS_MAX_ACK_PENDING` | `max_ack_pending` | `1000` |
    /// | `BUS_USER`, `BUS_PASSWORD`, `BUS_TOKEN`, `BUS_NKEY`, `BUS_CREDENTIALS_FILE` | `auth.*` | |
    /// | `BUS_TLS_REQUIRED`, `BUS_TLS_CA_FILE`, `BUS_TLS_CERT_FILE`, `BUS_TLS_KEY_FILE` | `tls.*` | `true`, paths |
    /// | `BUS_STREAM_SUBJECTS` | `stream.subjects` | `cqc.events.v1.>,audit.>` |
    /// | `BUS_STREAM_STORAGE` | `stream.storage` | `file`, `memory` |
    /// | `BUS_STREAM_REPLICAS` | `stream.replicas` | `3` |
    /// | `BUS_STREAM_MAX_AGE` | `stream.max_age` | `7d` |
    /// | `BUS_STREAM_DUPLICATE_WINDOW` | `stream.duplicate_window` | `2m` |
    /// | `BUS_BACKOFF` | `consumer.backoff` | `1s,5s,30s` |
    /// | `BUS_CONCURRENCY` | `consumer.concurrency` | `16` |
    /// | `BUS_DLQ_STREAM_NAME`, `BUS_DLQ_SUBJECT_PREFIX` | `dead_letter.*` | |
    /// | `BUS_PUBLISH_TIMEOUT`, `BUS_DRAIN_TIMEOUT` | | `5s`, `30s` |
    /// | `BUS_MEMORY_QUEUE_CAPACITY` | `memory_queue_capacity` | `1024` |
    /// | `BUS_TRACE_CONTEXT` | `trace_context` | `true` |
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests, or
    /// another source of settings).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Env(&lookup);
        let mut c = Self::default();
        env.parse("BUS_BACKEND", &mut c.backend, |v| {
            match v.to_ascii_lowercase().as_str() {
                "memory" => Ok(BackendKind::Memory),
                "jetstream" | "nats" => Ok(BackendKind::JetStream),
                _ => Err("expected `memory` or `jetstream`".into()),
            }
        })?;
        env.parse("BUS_SERVERS", &mut c.servers, |v| Ok(list(v)))?;
        env.string("BUS_STREAM_NAME", &mut c.stream_name);
        env.string("BUS_CONSUMER_NAME", &mut c.consumer_name);
        env.parse("BUS_MAX_DELIVER", &mut c.max_deliver, from_str)?;
        env.parse("BUS_ACK_WAIT", &mut c.ack_wait, parse_duration)?;
        env.parse("BUS_MAX_ACK_PENDING", &mut c.max_ack_pending, from_str)?;
        env.opt("BUS_USER", &mut c.auth.user);
        env.opt("BUS_PASSWORD", &mut c.auth.password);
        env.opt("BUS_TOKEN", &mut c.auth.token);
        env.opt("BUS_NKEY", &mut c.auth.nkey);
        if let Some(v) = env.get("BUS_CREDENTIALS_FILE") {
            c.auth.credentials_file = Some(v.into());
        }
        let mut tls = c.tls.take().unwrap_or_default();
        let mut any_tls = false;
        if env.get("BUS_TLS_REQUIRED").is_some() {
            env.parse("BUS_TLS_REQUIRED", &mut tls.required, from_str)?;
            any_tls = true;
        }
        for (name, slot) in [
            ("BUS_TLS_CA_FILE", &mut tls.ca_file),
            ("BUS_TLS_CERT_FILE", &mut tls.cert_file),
            ("BUS_TLS_KEY_FILE", &mut tls.key_file),
        ] {
            if let Some(v) = env.get(name) {
                *slot = Some(v.into());
                any_tls = true;
            }
        }
        if any_tls {
            c.tls = Some(tls);
        }
        env.parse("BUS_STREAM_SUBJECTS", &mut c.stream.subjects, |v| {
            Ok(list(v))
        })?;
        env.parse("BUS_STREAM_STORAGE", &mut c.stream.storage, |v| {
            match v.to_ascii_lowercase().as_str() {
                "file" => Ok(Storage::File),
                "memory" => Ok(Storage::Memory),
                _ => Err("expected `file` or `memory`".into()),
            }
        })?;
        env.parse("BUS_STREAM_REPLICAS", &mut c.stream.replicas, from_str)?;
        env.parse("BUS_STREAM_MAX_AGE", &mut c.stream.max_age, parse_duration)?;
        env.parse(
            "BUS_STREAM_DUPLICATE_WINDOW",
            &mut c.stream.duplicate_window,
            parse_duration,
        )?;
        env.parse("BUS_BACKOFF", &mut c.consumer.backoff, |v| {
            list(v).iter().map(|d| parse_duration(d)).collect()
        })?;
        env.parse("BUS_CONCURRENCY", &mut c.consumer.concurrency, from_str)?;
        env.string("BUS_DLQ_STREAM_NAME", &mut c.dead_letter.stream_name);
        env.string("BUS_DLQ_SUBJECT_PREFIX", &mut c.dead_letter.subject_prefix);
        env.parse(
            "BUS_PUBLISH_TIMEOUT",
            &mut c.publish_timeout,
            parse_duration,
        )?;
        env.parse("BUS_DRAIN_TIMEOUT", &mut c.drain_timeout, parse_duration)?;
        env.parse(
            "BUS_MEMORY_QUEUE_CAPACITY",
            &mut c.memory_queue_capacity,
            from_str,
        )?;
        env.parse("BUS_TRACE_CONTEXT", &mut c.trace_context, from_str)?;
        Ok(c)
    }

    /// Checks the settings that would otherwise fail later, with what to change.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.max_deliver == 0 {
            return bad("`max_deliver` must be at least 1".into());
        }
        if self.max_ack_pending == 0 {
            return bad("`max_ack_pending` must be at least 1".into());
        }
        if self.consumer.concurrency == 0 {
            return bad("`consumer.concurrency` must be at least 1".into());
        }
        if self.memory_queue_capacity == 0 {
            return bad("`memory_queue_capacity` must be at least 1".into());
        }
        if self.stream.subjects.is_empty() {
            return bad("`stream.subjects` is empty: list the subjects the events stream captures, e.g. `cqc.events.v1.>`".into());
        }
        for s in &self.stream.subjects {
            crate::topic::validate_filter(s)
                .or_else(|e| bad(format!("`stream.subjects` entry: {e}")))?;
        }
        crate::topic::validate_topic(&self.dead_letter.subject_prefix)
            .or_else(|e| bad(format!("`dead_letter.subject_prefix`: {e}")))?;
        let dlq_filter = self.dead_letter.filter();
        if self
            .stream
            .subjects
            .iter()
            .any(|s| crate::topic::filter_matches(s, &self.dead_letter.subject_for("x")))
        {
            return bad(format!(
                "the events stream's subjects overlap the dead-letter subjects `{dlq_filter}`: \
                 pick another `dead_letter.subject_prefix`"
            ));
        }
        for (what, name) in [
            ("stream_name", &self.stream_name),
            ("dead_letter.stream_name", &self.dead_letter.stream_name),
        ] {
            if !bus_names::is_valid_stream_name(name) {
                return bad(format!(
                    "`{what}` = {name:?} is not a valid stream name: {}",
                    bus_names::STREAM_NAME_RULE
                ));
            }
        }
        // The default group of a handler is `{consumer_name}-{handler}`: the same rule.
        if !self.consumer_name.is_empty()
            && let Err(e) = bus_names::check_group(&self.consumer_name)
        {
            return bad(format!(
                "`consumer_name` = {:?} cannot start a group name: {}",
                self.consumer_name,
                e.reason()
            ));
        }
        if self.backend == BackendKind::JetStream {
            if self.servers.is_empty() {
                return bad("`servers` is empty: give at least one NATS URL".into());
            }
            let methods = [
                self.auth.user.is_some() || self.auth.password.is_some(),
                self.auth.token.is_some(),
                self.auth.nkey.is_some(),
                self.auth.credentials_file.is_some(),
            ];
            if methods.iter().filter(|m| **m).count() > 1 {
                return bad(
                    "set one authentication method: user/password, token, nkey or credentials_file"
                        .into(),
                );
            }
            if self.auth.user.is_some() != self.auth.password.is_some() {
                return bad("`auth.user` and `auth.password` go together".into());
            }
        }
        Ok(())
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn string(&self, name: &str, slot: &mut String) {
        if let Some(v) = self.get(name) {
            *slot = v;
        }
    }

    fn opt(&self, name: &str, slot: &mut Option<String>) {
        if let Some(v) = self.get(name) {
            *slot = Some(v);
        }
    }

    fn parse<T>(
        &self,
        name: &str,
        slot: &mut T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(), Error> {
        if let Some(v) = self.get(name) {
            *slot = parse(v.trim())
                .map_err(|e| Error::Config(format!("{name}={v:?} is not valid: {e}")))?;
        }
        Ok(())
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn from_str<T: std::str::FromStr>(v: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    v.parse().map_err(|e: T::Err| e.to_string())
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{e} (write e.g. `250ms`, `30s`, `2m`)"))
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
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
            .map(|s| super::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
        assert_eq!(c.stream_name, "CQC_EVENTS");
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
    fn validation() {
        assert!(EventBusConfig::default().validate().is_ok());
        let mut c = EventBusConfig::jetstream(["nats://x:4222"]);
        c.auth.token = Some("t".into());
        c.auth.nkey = Some("SU".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("one authentication method")
        );
        let mut c = EventBusConfig::default();
        c.stream.subjects = vec!["dlq.>".into()];
        assert!(c.validate().unwrap_err().to_string().contains("overlap"));
        let c = EventBusConfig {
            stream_name: "a.b".into(),
            ..EventBusConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("stream name")
        );
    }
}
