//! Making sure the events and dead-letter streams exist as configured, without ever resetting
//! an existing one.
//!
//! Stream info is read and updated as raw JSON, so settings this client does not model (for
//! example `metadata` or `compression` on a 2.10+ server) survive an update untouched.

use std::time::Duration;

use async_nats::jetstream::{Context, ErrorCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::api::{self, ApiError};
use crate::config::validate::{self as setting, Setting};
use crate::config::{Retention, Storage, StreamManagement};
use crate::topic::filter_covers as covers;
use crate::{Error, EventBusConfig};

/// Which of the bus's two streams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Events,
    DeadLetters,
}

/// What a stream must look like.
struct Wanted<'a> {
    role: Role,
    name: &'a str,
    subjects: Vec<String>,
    retention: Retention,
    storage: Storage,
    replicas: usize,
    max_age: Duration,
    /// `None`: not compared on an existing stream.
    duplicate_window: Option<Duration>,
}

impl Wanted<'_> {
    /// The settings that configure this stream's name, storage, replicas and max age.
    fn settings(&self) -> [Setting; 4] {
        match self.role {
            Role::Events => [
                setting::STREAM_NAME,
                setting::STREAM_STORAGE,
                setting::STREAM_REPLICAS,
                setting::STREAM_MAX_AGE,
            ],
            Role::DeadLetters => [
                setting::DLQ_STREAM_NAME,
                setting::DLQ_STORAGE,
                setting::DLQ_REPLICAS,
                setting::DLQ_MAX_AGE,
            ],
        }
    }
}

/// Creates or checks both streams, as `stream.management` allows; returns the subjects each
/// captures (as on the server, or as configured when the streams are left alone): the events
/// stream's, then the dead-letter stream's.
pub(crate) async fn ensure_streams(
    js: &Context,
    config: &EventBusConfig,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let s = &config.stream;
    let dl = &config.dead_letter;
    let events = Wanted {
        role: Role::Events,
        name: &config.stream_name,
        subjects: s.subjects.clone(),
        retention: s.retention,
        storage: s.storage,
        replicas: s.replicas,
        max_age: s.max_age,
        duplicate_window: Some(s.duplicate_window),
    };
    let dead_letters = Wanted {
        role: Role::DeadLetters,
        name: &dl.stream_name,
        subjects: vec![dl.filter()],
        retention: Retention::Limits,
        storage: dl.storage,
        replicas: dl.replicas,
        max_age: dl.max_age,
        duplicate_window: None,
    };
    let mode = s.management;
    if mode == StreamManagement::None {
        tracing::info!(
            stream = events.name,
            dead_letters = dead_letters.name,
            "stream.management = none: streams taken as configured, not read or changed"
        );
        return Ok((events.subjects, dead_letters.subjects));
    }
    let events = ensure(js, &events, mode, config.publish_timeout).await?;
    let dead_letters = ensure(js, &dead_letters, mode, config.publish_timeout).await?;
    Ok((events, dead_letters))
}

fn storage_str(s: Storage) -> &'static str {
    match s {
        Storage::File => "file",
        Storage::Memory => "memory",
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s (unlimited)".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

async fn ensure(
    js: &Context,
    w: &Wanted<'_>,
    mode: StreamManagement,
    patience: Duration,
) -> Result<Vec<String>, Error> {
    let patience = patience.max(Duration::from_secs(10));
    for _ in 0..3 {
        let info =
            api::request(js, &format!("STREAM.INFO.{}", w.name), &json!({}), patience).await?;
        match ApiError::of(&info) {
            None => return check_and_extend(js, w, info, mode, patience).await,
            Some(e) if e.code == ErrorCode::STREAM_NOT_FOUND => {}
            Some(e) => return Err(refused(w.name, "reading", e)),
        }
        if mode == StreamManagement::Verify {
            return Err(missing(js, w, patience).await);
        }
        let config = json!({
            "name": w.name,
            "subjects": w.subjects,
            "retention": w.retention.as_str(),
            "storage": storage_str(w.storage),
            "num_replicas": w.replicas,
            "max_age": nanos(w.max_age),
            "duplicate_window": nanos(w.duplicate_window.unwrap_or(Duration::from_secs(120))),
            "discard": "old",
            "max_msgs": -1,
            "max_bytes": -1,
            "max_msg_size": -1,
            "max_consumers": -1,
            "max_msgs_per_subject": -1,
        });
        let reply = create(js, w.name, &config, patience).await?;
        match ApiError::of(&reply) {
            None => {
                tracing::info!(stream = w.name, subjects = ?w.subjects, "stream created");
                return Ok(w.subjects.clone());
            }
            // Another process created it meanwhile: compare with what it made.
            Some(e) if e.code == ErrorCode::STREAM_NAME_EXIST => continue,
            Some(e) if e.code == ErrorCode::STREAM_SUBJECT_OVERLAP => {
                return Err(overlap(js, w, e, patience).await);
            }
            Some(e) => return Err(refused(w.name, "creating", e)),
        }
    }
    Err(Error::Backend {
        context: format!(
            "stream `{}` kept appearing and disappearing while being created",
            w.name
        ),
        retryable: true,
        source: "concurrent stream changes".into(),
    })
}

/// Sends `STREAM.CREATE`, retrying for up to `patience` while the cluster cannot place the
/// replicas: a cluster that is forming, or has a node restarting, says so for a few seconds.
async fn create(
    js: &Context,
    stream: &str,
    config: &Value,
    patience: Duration,
) -> Result<Value, Error> {
    let deadline = Instant::now() + patience;
    loop {
        let reply = api::request(js, &format!("STREAM.CREATE.{stream}"), config, patience).await?;
        match ApiError::of(&reply) {
            Some(e) if e.code == ErrorCode::CLUSTER_NO_PEERS && Instant::now() < deadline => {
                tracing::debug!(stream, error = e.description, "stream placement retried");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => return Ok(reply),
        }
    }
}

/// The streams on the server that capture a subject overlapping `subject`.
async fn streams_capturing(js: &Context, subject: &str, patience: Duration) -> Vec<String> {
    let reply = api::request(js, "STREAM.NAMES", &json!({ "subject": subject }), patience).await;
    reply
        .ok()
        .and_then(|r| r.get("streams").cloned())
        .and_then(|s| serde_json::from_value::<Vec<String>>(s).ok())
        .unwrap_or_default()
}

/// The first (wanted subject, stream) where another stream already captures what `w` wants.
async fn first_capturing(
    js: &Context,
    w: &Wanted<'_>,
    patience: Duration,
) -> Option<(String, String)> {
    for subject in &w.subjects {
        if let Some(stream) = streams_capturing(js, subject, patience)
            .await
            .into_iter()
            .find(|s| s != w.name)
        {
            return Some((subject.clone(), stream));
        }
    }
    None
}

/// What to set so the bus uses `stream`, which captures `subject`, or keeps out of its way.
fn point_at(w: &Wanted<'_>, subject: &str, stream: &str) -> String {
    match w.role {
        Role::Events => format!(
            "stream `{stream}` already captures `{subject}`; to use it, set {} = \"{stream}\" \
             (the bus then verifies it and adds nothing but missing subjects)",
            setting::STREAM_NAME
        ),
        Role::DeadLetters => format!(
            "stream `{stream}` already captures the dead-letter subjects `{subject}`; set {} = \
             \"{stream}\" to keep dead letters there, or give them other subjects with {}",
            setting::DLQ_STREAM_NAME,
            setting::DLQ_SUBJECT_PREFIX
        ),
    }
}

/// The error for a create refused because another stream captures some of the subjects: names
/// that stream and the setting that points the bus at it.
async fn overlap(js: &Context, w: &Wanted<'_>, e: ApiError, patience: Duration) -> Error {
    let advice = match first_capturing(js, w, patience).await {
        Some((subject, stream)) => point_at(w, &subject, &stream),
        None => format!(
            "another stream captures some of `{}`; point {} at it",
            w.subjects.join(", "),
            w.settings()[0]
        ),
    };
    Error::Backend {
        context: format!(
            "creating stream `{}` failed (JetStream error {}/{}): {advice}",
            w.name, e.status, e.code.0
        ),
        retryable: false,
        source: e.description.into(),
    }
}

/// The error for a stream that `stream.management = verify` requires but does not exist.
async fn missing(js: &Context, w: &Wanted<'_>, patience: Duration) -> Error {
    let mut context = format!(
        "stream `{}` does not exist, and {} = verify does not create streams",
        w.name,
        setting::STREAM_MANAGEMENT
    );
    match first_capturing(js, w, patience).await {
        Some((subject, stream)) => {
            context.push_str("; ");
            context.push_str(&point_at(w, &subject, &stream));
        }
        None => context
            .push_str("; create it (or let the bus: `create_or_verify`), or name the right one"),
    }
    Error::Backend {
        context,
        retryable: false,
        source: "stream not found".into(),
    }
}

/// The error for a refused stream request, with what to do about the common refusals.
fn refused(stream: &str, action: &str, e: ApiError) -> Error {
    let hint = match e.code {
        ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED => {
            ": replicas > 1 needs a JetStream cluster; set `stream.replicas = 1`"
        }
        ErrorCode::CLUSTER_NO_PEERS => {
            ": the cluster has fewer JetStream servers up than `stream.replicas`; \
             start more servers or lower `stream.replicas`"
        }
        ErrorCode::STREAM_SUBJECT_OVERLAP => {
            ": another stream already captures these subjects; pick other `stream.subjects`"
        }
        ErrorCode::INSUFFICIENT_RESOURCES
        | ErrorCode::STORAGE_RESOURCES_EXCEEDED
        | ErrorCode::MEMORY_RESOURCES_EXCEEDED => ": the server lacks resources for this stream",
        _ => "",
    };
    Error::Backend {
        context: format!(
            "{action} stream `{stream}` failed (JetStream error {}/{}){hint}",
            e.status, e.code.0
        ),
        retryable: e.is_unavailable() || e.code == ErrorCode::CLUSTER_NO_PEERS,
        source: e.description.into(),
    }
}

/// Compares an existing stream with what is wanted: adds missing subjects (unless only
/// verifying), and reports the first other difference as [`Error::StreamMismatch`]. Never
/// changes anything else.
async fn check_and_extend(
    js: &Context,
    w: &Wanted<'_>,
    info: Value,
    mode: StreamManagement,
    patience: Duration,
) -> Result<Vec<String>, Error> {
    let Some(mut config) = info.get("config").cloned() else {
        return Err(Error::Backend {
            context: format!("stream `{}` info has no `config`", w.name),
            retryable: false,
            source: info.to_string().into(),
        });
    };
    let mismatch = |setting: Setting, existing: String, configured: String| {
        Err(Error::StreamMismatch {
            stream: w.name.to_owned(),
            setting: setting.path,
            variable: setting.env,
            existing,
            configured,
        })
    };
    let [_, storage_setting, replicas_setting, max_age_setting] = w.settings();
    let text = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let number = |key: &str| config.get(key).and_then(Value::as_u64).unwrap_or(0);

    let retention = text("retention");
    if retention != w.retention.as_str() {
        return match w.role {
            Role::Events => mismatch(
                setting::STREAM_RETENTION,
                retention,
                w.retention.as_str().into(),
            ),
            Role::DeadLetters => mismatch(
                setting::DLQ_STREAM_NAME,
                format!("a `{retention}` stream"),
                "a `limits` stream (dead letters are kept until handled): name another \
                 stream"
                    .into(),
            ),
        };
    }
    let storage = text("storage");
    if storage != storage_str(w.storage) {
        return mismatch(storage_setting, storage, storage_str(w.storage).into());
    }
    let replicas = number("num_replicas").max(1);
    if replicas != w.replicas as u64 {
        return mismatch(
            replicas_setting,
            replicas.to_string(),
            w.replicas.to_string(),
        );
    }
    let existing = Duration::from_nanos(number("max_age"));
    if existing != w.max_age {
        return mismatch(max_age_setting, show(existing), show(w.max_age));
    }
    if let Some(window) = w.duplicate_window {
        let existing = Duration::from_nanos(number("duplicate_window"));
        if existing != window {
            return mismatch(
                setting::STREAM_DUPLICATE_WINDOW,
                show(existing),
                show(window),
            );
        }
    }

    let mut subjects: Vec<String> = config
        .get("subjects")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<String> = w
        .subjects
        .iter()
        .filter(|want| !subjects.iter().any(|have| covers(have, want)))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(subjects);
    }
    if mode == StreamManagement::Verify {
        return mismatch(
            setting::STREAM_SUBJECTS,
            subjects.join(", "),
            format!("also {} (`verify` adds nothing)", missing.join(", ")),
        );
    }
    subjects.extend(missing.iter().cloned());
    config["subjects"] = json!(subjects);
    let reply = api::request(js, &format!("STREAM.UPDATE.{}", w.name), &config, patience).await?;
    if let Some(e) = ApiError::of(&reply) {
        return Err(refused(w.name, "adding subjects to", e));
    }
    tracing::info!(stream = w.name, added = ?missing, "subjects added to existing stream");
    Ok(subjects)
}
