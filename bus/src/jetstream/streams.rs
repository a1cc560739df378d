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
use crate::config::Storage;
use crate::topic::filter_covers as covers;
use crate::{Error, EventBusConfig};

/// What a stream must look like.
struct Wanted<'a> {
    name: &'a str,
    subjects: Vec<String>,
    storage: Storage,
    replicas: usize,
    /// `None`: not compared on an existing stream; created with 0 (keep forever).
    max_age: Option<Duration>,
    /// `None`: not compared on an existing stream.
    duplicate_window: Option<Duration>,
}

/// Creates or checks both streams; returns the subjects each captures (as on the server): the
/// events stream's, then the dead-letter stream's.
pub(crate) async fn ensure_streams(
    js: &Context,
    config: &EventBusConfig,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let s = &config.stream;
    let events = Wanted {
        name: &config.stream_name,
        subjects: s.subjects.clone(),
        storage: s.storage,
        replicas: s.replicas,
        max_age: Some(s.max_age),
        duplicate_window: Some(s.duplicate_window),
    };
    let dead_letters = Wanted {
        name: &config.dead_letter.stream_name,
        subjects: vec![config.dead_letter.filter()],
        storage: s.storage,
        replicas: s.replicas,
        max_age: None,
        duplicate_window: None,
    };
    let events = ensure(js, &events, config.publish_timeout).await?;
    let dead_letters = ensure(js, &dead_letters, config.publish_timeout).await?;
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

async fn ensure(js: &Context, w: &Wanted<'_>, patience: Duration) -> Result<Vec<String>, Error> {
    let patience = patience.max(Duration::from_secs(10));
    for _ in 0..3 {
        let info =
            api::request(js, &format!("STREAM.INFO.{}", w.name), &json!({}), patience).await?;
        match ApiError::of(&info) {
            None => return check_and_extend(js, w, info, patience).await,
            Some(e) if e.code == ErrorCode::STREAM_NOT_FOUND => {}
            Some(e) => return Err(refused(w.name, "reading", e)),
        }
        let config = json!({
            "name": w.name,
            "subjects": w.subjects,
            "retention": "limits",
            "storage": storage_str(w.storage),
            "num_replicas": w.replicas,
            "max_age": nanos(w.max_age.unwrap_or(Duration::ZERO)),
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

/// Compares an existing stream with what is wanted: adds missing subjects, and reports the
/// first other difference as [`Error::StreamMismatch`]. Never changes anything else.
async fn check_and_extend(
    js: &Context,
    w: &Wanted<'_>,
    info: Value,
    patience: Duration,
) -> Result<Vec<String>, Error> {
    let Some(mut config) = info.get("config").cloned() else {
        return Err(Error::Backend {
            context: format!("stream `{}` info has no `config`", w.name),
            retryable: false,
            source: info.to_string().into(),
        });
    };
    let mismatch = |setting: &'static str, existing: String, configured: String| {
        Err(Error::StreamMismatch {
            stream: w.name.to_owned(),
            setting,
            existing,
            configured,
        })
    };
    let text = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let number = |key: &str| config.get(key).and_then(Value::as_u64).unwrap_or(0);

    let retention = text("retention");
    if retention != "limits" {
        return mismatch(
            "retention",
            retention,
            "limits (so every group sees every event)".into(),
        );
    }
    let storage = text("storage");
    if storage != storage_str(w.storage) {
        return mismatch("stream.storage", storage, storage_str(w.storage).into());
    }
    let replicas = number("num_replicas").max(1);
    if replicas != w.replicas as u64 {
        return mismatch(
            "stream.replicas",
            replicas.to_string(),
            w.replicas.to_string(),
        );
    }
    if let Some(max_age) = w.max_age {
        let existing = Duration::from_nanos(number("max_age"));
        if existing != max_age {
            return mismatch("stream.max_age", show(existing), show(max_age));
        }
    }
    if let Some(window) = w.duplicate_window {
        let existing = Duration::from_nanos(number("duplicate_window"));
        if existing != window {
            return mismatch("stream.duplicate_window", show(existing), show(window));
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
    subjects.extend(missing.iter().cloned());
    config["subjects"] = json!(subjects);
    let reply = api::request(js, &format!("STREAM.UPDATE.{}", w.name), &config, patience).await?;
    if let Some(e) = ApiError::of(&reply) {
        return Err(refused(w.name, "adding subjects to", e));
    }
    tracing::info!(stream = w.name, added = ?missing, "subjects added to existing stream");
    Ok(subjects)
}
