//! Loading the configuration from `BUS_*` environment variables.

use std::fmt;
use std::time::Duration;

use super::{BackendKind, EventBusConfig, Retention, Storage, StreamManagement};
use crate::Error;

impl EventBusConfig {
    /// Reads `BUS_*` environment variables over the defaults.
    ///
    /// | variable | field | example |
    /// |---|---|---|
    /// | `BUS_BACKEND` | `backend` | `memory`, `jetstream` |
    /// | `BUS_SERVERS` | `servers` | `nats://a:4222,nats://b:4222` |
    /// | `BUS_STREAM_NAME` | `stream_name` | `EVENTS` |
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
    /// | `BUS_HANDLER_TIMEOUT` | `consumer.handler_timeout` | `60s`, `off` |
    /// | `BUS_START` | `consumer.start` | `new`, `all`, `last`, `sequence:42`, `time:2024-05-01T12:00:00Z` |
    /// | `BUS_STREAM_RETENTION` | `stream.retention` | `limits`, `interest`, `workqueue` |
    /// | `BUS_STREAM_MANAGEMENT` | `stream.management` | `create_or_verify`, `verify`, `none` |
    /// | `BUS_DLQ_STREAM_NAME`, `BUS_DLQ_SUBJECT_PREFIX` | `dead_letter.*` | |
    /// | `BUS_DLQ_STORAGE`, `BUS_DLQ_REPLICAS`, `BUS_DLQ_MAX_AGE` | `dead_letter.*` | `file`, `3`, `30d` |
    /// | `BUS_PUBLISH_TIMEOUT`, `BUS_DRAIN_TIMEOUT` | | `5s`, `30s` |
    /// | `BUS_MEMORY_QUEUE_CAPACITY` | `memory_queue_capacity` | `1024` |
    /// | `BUS_TRACE_CONTEXT` | `trace_context` | `true` |
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests, or
    /// another source of settings).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::default().with_lookup(lookup)
    }

    /// This configuration with the `BUS_*` environment variables that are set applied over it,
    /// as [`from_env`](Self::from_env) applies them over the defaults: for a configuration
    /// file that the environment may override.
    ///
    /// ```
    /// let file: bus::EventBusConfig = serde_json::from_str(r#"{ "stream_name": "ORDERS" }"#).unwrap();
    /// let config = file.with_env()?;
    /// # Ok::<(), bus::Error>(())
    /// ```
    pub fn with_env(self) -> Result<Self, Error> {
        self.with_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`with_env`](Self::with_env), reading variables through `lookup`.
    pub fn with_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let env = Env(&lookup);
        let mut c = self;
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
        let mut any_tls = c.tls.is_some();
        let mut tls = c.tls.take().unwrap_or_default();
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
        env.parse("BUS_STREAM_RETENTION", &mut c.stream.retention, |v| match v
            .to_ascii_lowercase()
            .as_str()
        {
            "limits" => Ok(Retention::Limits),
            "interest" => Ok(Retention::Interest),
            "workqueue" | "work_queue" => Ok(Retention::WorkQueue),
            _ => Err("expected `limits`, `interest` or `workqueue`".into()),
        })?;
        env.parse(
            "BUS_STREAM_MANAGEMENT",
            &mut c.stream.management,
            |v| match v.to_ascii_lowercase().as_str() {
                "create_or_verify" => Ok(StreamManagement::CreateOrVerify),
                "verify" => Ok(StreamManagement::Verify),
                "none" => Ok(StreamManagement::None),
                _ => Err("expected `create_or_verify`, `verify` or `none`".into()),
            },
        )?;
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
        env.parse(
            "BUS_HANDLER_TIMEOUT",
            &mut c.consumer.handler_timeout,
            parse_optional_duration,
        )?;
        env.parse("BUS_START", &mut c.consumer.start, |v| v.parse())?;
        env.string("BUS_DLQ_STREAM_NAME", &mut c.dead_letter.stream_name);
        env.string("BUS_DLQ_SUBJECT_PREFIX", &mut c.dead_letter.subject_prefix);
        env.parse("BUS_DLQ_STORAGE", &mut c.dead_letter.storage, |v| {
            match v.to_ascii_lowercase().as_str() {
                "file" => Ok(Storage::File),
                "memory" => Ok(Storage::Memory),
                _ => Err("expected `file` or `memory`".into()),
            }
        })?;
        env.parse("BUS_DLQ_REPLICAS", &mut c.dead_letter.replicas, from_str)?;
        env.parse(
            "BUS_DLQ_MAX_AGE",
            &mut c.dead_letter.max_age,
            parse_duration,
        )?;
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

pub(super) fn parse_duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v).map_err(|e| format!("{e} (write e.g. `250ms`, `30s`, `2m`)"))
}

/// A duration, or `off` (also `none`, `0`) for none.
pub(super) fn parse_optional_duration(v: &str) -> Result<Option<Duration>, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "0" => Ok(None),
        _ => parse_duration(v).map(Some),
    }
}
