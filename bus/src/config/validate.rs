//! Checking a configuration before anything is built from it: every count and duration within
//! bounds, names and subjects valid, streams that can coexist. Each problem is reported with the
//! setting's path and its environment variable, and all of them at once.

use std::fmt;
use std::time::Duration;

use super::{BackendKind, EventBusConfig};
use crate::Error;

/// A setting, as errors name it: its path in the configuration and its environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The path in a configuration file, e.g. `stream.replicas`.
    pub(crate) path: &'static str,
    /// The environment variable, e.g. `BUS_STREAM_REPLICAS`.
    pub(crate) env: &'static str,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({})", self.path, self.env)
    }
}

macro_rules! settings {
    ($($name:ident = $path:literal, $env:literal;)*) => {
        $(pub(crate) const $name: Setting = Setting { path: $path, env: $env };)*
    };
}

settings! {
    SERVERS = "servers", "BUS_SERVERS";
    STREAM_NAME = "stream_name", "BUS_STREAM_NAME";
    CONSUMER_NAME = "consumer_name", "BUS_CONSUMER_NAME";
    MAX_DELIVER = "max_deliver", "BUS_MAX_DELIVER";
    ACK_WAIT = "ack_wait", "BUS_ACK_WAIT";
    MAX_ACK_PENDING = "max_ack_pending", "BUS_MAX_ACK_PENDING";
    AUTH_USER = "auth.user", "BUS_USER";
    STREAM_SUBJECTS = "stream.subjects", "BUS_STREAM_SUBJECTS";
    STREAM_REPLICAS = "stream.replicas", "BUS_STREAM_REPLICAS";
    STREAM_MAX_AGE = "stream.max_age", "BUS_STREAM_MAX_AGE";
    STREAM_DUPLICATE_WINDOW = "stream.duplicate_window", "BUS_STREAM_DUPLICATE_WINDOW";
    BACKOFF = "consumer.backoff", "BUS_BACKOFF";
    CONCURRENCY = "consumer.concurrency", "BUS_CONCURRENCY";
    HANDLER_TIMEOUT = "consumer.handler_timeout", "BUS_HANDLER_TIMEOUT";
    DLQ_STREAM_NAME = "dead_letter.stream_name", "BUS_DLQ_STREAM_NAME";
    DLQ_SUBJECT_PREFIX = "dead_letter.subject_prefix", "BUS_DLQ_SUBJECT_PREFIX";
    DLQ_STORAGE = "dead_letter.storage", "BUS_DLQ_STORAGE";
    DLQ_REPLICAS = "dead_letter.replicas", "BUS_DLQ_REPLICAS";
    DLQ_MAX_AGE = "dead_letter.max_age", "BUS_DLQ_MAX_AGE";
    STREAM_STORAGE = "stream.storage", "BUS_STREAM_STORAGE";
    STREAM_RETENTION = "stream.retention", "BUS_STREAM_RETENTION";
    STREAM_MANAGEMENT = "stream.management", "BUS_STREAM_MANAGEMENT";
    PUBLISH_TIMEOUT = "publish_timeout", "BUS_PUBLISH_TIMEOUT";
    DRAIN_TIMEOUT = "drain_timeout", "BUS_DRAIN_TIMEOUT";
    MEMORY_QUEUE_CAPACITY = "memory_queue_capacity", "BUS_MEMORY_QUEUE_CAPACITY";
}

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest dead-letter subject prefix, in bytes.
const DLQ_PREFIX_MAX: usize = 128;

impl EventBusConfig {
    /// Checks the settings that would otherwise fail later: counts and durations within bounds,
    /// valid names and subjects, streams that can coexist. The error lists every problem, each
    /// with its setting and environment variable and what to change.
    ///
    /// ```
    /// let mut config = bus::EventBusConfig::default();
    /// config.stream.replicas = 0;
    /// let err = config.validate().unwrap_err().to_string();
    /// assert!(err.contains("stream.replicas") && err.contains("BUS_STREAM_REPLICAS"));
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Problems::default();
        self.check_counts(&mut problems);
        self.check_durations(&mut problems);
        self.check_names(&mut problems);
        self.check_subjects(&mut problems);
        if self.backend == BackendKind::JetStream {
            self.check_connection(&mut problems);
        }
        problems.into_result()
    }

    fn check_counts(&self, p: &mut Problems) {
        p.count(MAX_DELIVER, u64::from(self.max_deliver), 1, 100_000);
        p.count(MAX_ACK_PENDING, self.max_ack_pending as u64, 1, 1_000_000);
        p.count(CONCURRENCY, self.consumer.concurrency as u64, 1, 10_000);
        p.count(
            MEMORY_QUEUE_CAPACITY,
            self.memory_queue_capacity as u64,
            1,
            1_000_000,
        );
        p.count(STREAM_REPLICAS, self.stream.replicas as u64, 1, 5);
        p.count(DLQ_REPLICAS, self.dead_letter.replicas as u64, 1, 5);
    }

    fn check_durations(&self, p: &mut Problems) {
        p.duration(ACK_WAIT, self.ack_wait, 100 * MS, DAY);
        p.duration(PUBLISH_TIMEOUT, self.publish_timeout, 100 * MS, HOUR);
        p.duration(DRAIN_TIMEOUT, self.drain_timeout, Duration::ZERO, HOUR);
        if let Some(t) = self.consumer.handler_timeout {
            p.duration(HANDLER_TIMEOUT, t, MS, DAY);
        }
        for d in &self.consumer.backoff {
            if d.is_zero() {
                p.push(format!(
                    "{BACKOFF} has a zero delay, which makes a hot redelivery loop: give delays \
                     like `1s,5s,30s`"
                ));
            } else {
                p.duration(BACKOFF, *d, MS, 7 * DAY);
            }
        }
        let max_age = self.stream.max_age;
        if !max_age.is_zero() {
            p.duration(STREAM_MAX_AGE, max_age, SECOND, 100 * YEAR);
        }
        let dlq_max_age = self.dead_letter.max_age;
        if !dlq_max_age.is_zero() {
            p.duration(DLQ_MAX_AGE, dlq_max_age, SECOND, 100 * YEAR);
        }
        let window = self.stream.duplicate_window;
        p.duration(STREAM_DUPLICATE_WINDOW, window, SECOND, 7 * DAY);
        if !max_age.is_zero() && window > max_age {
            p.push(format!(
                "{STREAM_DUPLICATE_WINDOW} = {} is longer than {STREAM_MAX_AGE} = {}: the server \
                 keeps ids only as long as the events; shorten the window",
                show(window),
                show(max_age)
            ));
        }
    }

    fn check_names(&self, p: &mut Problems) {
        for (setting, name) in [
            (STREAM_NAME, &self.stream_name),
            (DLQ_STREAM_NAME, &self.dead_letter.stream_name),
        ] {
            if !bus_names::is_valid_stream_name(name) {
                p.push(format!(
                    "{setting} = {name:?} is not a valid stream name: {}",
                    bus_names::STREAM_NAME_RULE
                ));
            }
        }
        if self.dead_letter.stream_name == self.stream_name {
            p.push(format!(
                "{DLQ_STREAM_NAME} is the events stream's name `{}`: dead letters need a stream \
                 of their own; give it another name",
                self.stream_name
            ));
        }
        // The default group of a handler is `{consumer_name}-{handler}`: the same rule.
        if !self.consumer_name.is_empty()
            && let Err(e) = bus_names::check_group(&self.consumer_name)
        {
            p.push(format!(
                "{CONSUMER_NAME} = {:?} cannot start a group name: {}",
                self.consumer_name,
                e.reason()
            ));
        }
    }

    fn check_subjects(&self, p: &mut Problems) {
        // Empty means "every topic" on memory; JetStream must know what its stream captures.
        if self.stream.subjects.is_empty() && self.backend == BackendKind::JetStream {
            p.push(format!(
                "{STREAM_SUBJECTS} is not set: the JetStream backend needs the subjects its \
                 events stream captures; set it to your events' package followed by `.>`, e.g. \
                 `acme.shipping.events.v1.>` (`EventBusConfig::cqc()` sets the CQC conventions)"
            ));
        }
        for s in &self.stream.subjects {
            if let Err(e) = bus_names::check_filter(s) {
                p.push(format!("{STREAM_SUBJECTS} entry {s:?}: {}", e.reason()));
            }
        }
        let prefix = &self.dead_letter.subject_prefix;
        if let Err(e) = bus_names::check_topic(prefix) {
            p.push(format!("{DLQ_SUBJECT_PREFIX} = {prefix:?}: {}", e.reason()));
            return;
        }
        if prefix.len() > DLQ_PREFIX_MAX {
            p.push(format!(
                "{DLQ_SUBJECT_PREFIX} is {} bytes long, over {DLQ_PREFIX_MAX}: use a short prefix",
                prefix.len()
            ));
        }
        let dead_letters = self.dead_letter.filter();
        for s in &self.stream.subjects {
            if bus_names::filters_overlap(s, &dead_letters) {
                p.push(format!(
                    "{DLQ_SUBJECT_PREFIX} = {prefix:?} puts dead letters on `{dead_letters}`, \
                     which overlaps the events stream's subject `{s}`: pick another prefix \
                     (the default is `dlq`)"
                ));
            }
        }
    }

    fn check_connection(&self, p: &mut Problems) {
        if self.servers.is_empty() {
            p.push(format!("{SERVERS} is empty: give at least one NATS URL"));
        }
        let auth = &self.auth;
        let methods = [
            auth.user.is_some() || auth.password.is_some(),
            auth.token.is_some(),
            auth.nkey.is_some(),
            auth.credentials_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            p.push(
                "set one authentication method: user/password (BUS_USER, BUS_PASSWORD), token \
                 (BUS_TOKEN), nkey (BUS_NKEY) or credentials file (BUS_CREDENTIALS_FILE)"
                    .into(),
            );
        }
        if auth.user.is_some() != auth.password.is_some() {
            p.push(format!(
                "{AUTH_USER} and `auth.password` (BUS_PASSWORD) go together"
            ));
        }
    }
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn count(&mut self, setting: Setting, value: u64, min: u64, max: u64) {
        if !(min..=max).contains(&value) {
            self.push(format!(
                "{setting} = {value} is out of range: give {min} to {max}"
            ));
        }
    }

    fn duration(&mut self, setting: Setting, value: Duration, min: Duration, max: Duration) {
        if !(min..=max).contains(&value) {
            self.push(format!(
                "{setting} = {} is out of range: give {} to {}",
                show(value),
                show(min),
                show(max)
            ));
        }
    }

    fn into_result(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(self.0.join("; ")))
        }
    }
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(edit: impl FnOnce(&mut EventBusConfig)) -> String {
        let mut c = EventBusConfig::jetstream(["nats://x:4222"]).with_cqc_conventions();
        edit(&mut c);
        c.validate()
            .map(|()| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        assert!(EventBusConfig::default().validate().is_ok());
        assert_eq!(problems(|_| {}), "");
    }

    #[test]
    fn every_bound_names_the_setting_and_its_variable() {
        type Edit = fn(&mut EventBusConfig);
        let cases: [(&str, Edit); 14] = [
            ("BUS_MAX_DELIVER", |c| {
                c.max_deliver = 0;
            }),
            ("BUS_MAX_ACK_PENDING", |c| {
                c.max_ack_pending = 0;
            }),
            ("BUS_CONCURRENCY", |c| {
                c.consumer.concurrency = 0;
            }),
            ("BUS_MEMORY_QUEUE_CAPACITY", |c| {
                c.memory_queue_capacity = 1 << 61;
            }),
            ("BUS_STREAM_REPLICAS", |c| {
                c.stream.replicas = 0;
            }),
            ("BUS_ACK_WAIT", |c| {
                c.ack_wait = Duration::ZERO;
            }),
            ("BUS_PUBLISH_TIMEOUT", |c| {
                c.publish_timeout = Duration::ZERO;
            }),
            ("BUS_PUBLISH_TIMEOUT", |c| {
                c.publish_timeout = Duration::from_secs(10_000_000_000_000_000_000);
            }),
            ("BUS_BACKOFF", |c| {
                c.consumer.backoff = vec![800 * DAY];
            }),
            ("BUS_BACKOFF", |c| {
                c.consumer.backoff = vec![Duration::ZERO];
            }),
            ("BUS_STREAM_DUPLICATE_WINDOW", |c| {
                c.stream.duplicate_window = Duration::ZERO;
            }),
            ("BUS_STREAM_MAX_AGE", |c| {
                c.stream.max_age = 1000 * YEAR;
            }),
            ("BUS_DLQ_STREAM_NAME", |c| {
                c.dead_letter.stream_name = c.stream_name.clone();
            }),
            ("BUS_DLQ_SUBJECT_PREFIX", |c| {
                c.dead_letter.subject_prefix = "cqc".into();
            }),
        ];
        for (var, edit) in cases {
            let p = problems(edit);
            assert!(p.contains(var), "{var}: {p}");
        }
    }

    #[test]
    fn all_problems_at_once() {
        let p = problems(|c| {
            c.stream.replicas = 0;
            c.consumer.concurrency = 0;
            c.stream.subjects = vec!["dlq.>".into()];
        });
        assert!(p.contains("BUS_STREAM_REPLICAS"), "{p}");
        assert!(p.contains("BUS_CONCURRENCY"), "{p}");
        assert!(p.contains("overlaps"), "{p}");
    }

    #[test]
    fn duplicate_window_fits_in_max_age() {
        let p = problems(|c| {
            c.stream.max_age = Duration::from_secs(60);
            c.stream.duplicate_window = Duration::from_secs(120);
        });
        assert!(
            p.contains("BUS_STREAM_DUPLICATE_WINDOW") && p.contains("shorten"),
            "{p}"
        );
    }

    #[test]
    fn auth_methods() {
        let p = problems(|c| {
            c.auth.token = Some("t".into());
            c.auth.nkey = Some("SU".into());
        });
        assert!(p.contains("one authentication method"), "{p}");
        let p = problems(|c| c.auth.user = Some("u".into()));
        assert!(p.contains("go together"), "{p}");
    }
}
