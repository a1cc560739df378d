//! `bus dlq list | show | replay`: the dead-letter stream, read through an ephemeral consumer
//! (list, replay by filter) or by sequence number (show, replay by number).

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::Stream;
use bus::headers;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Map, Value, json};

use crate::args::{DlqFilter, DlqListArgs, DlqReplayArgs, DlqShowArgs};
use crate::catalog::Catalog;
use crate::error::{Error, bail};
use crate::nats::Nats;
use crate::{json, time};

/// How long reading the dead-letter stream may wait for the next message it knows is there.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A dead letter as stored.
struct DeadLetter {
    seq: u64,
    time: async_nats::datetime::DateTime,
    subject: String,
    headers: Option<HeaderMap>,
    payload: Bytes,
}

impl DeadLetter {
    fn header(&self, name: &str) -> Option<&str> {
        json::header(self.headers.as_ref(), name)
    }

    /// The listing of a dead letter: where it is, its `Bus-Dlq-*` headers, and whether it is a
    /// replay.
    fn summary(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("seq".into(), json!(self.seq));
        out.insert("time".into(), json!(time::format(self.time)));
        out.insert("subject".into(), json!(self.subject));
        for (key, name) in [
            ("topic", headers::DLQ_TOPIC),
            ("group", headers::DLQ_GROUP),
            ("error_class", headers::DLQ_ERROR_CLASS),
            ("error", headers::DLQ_ERROR),
            ("stream_seq", headers::DLQ_STREAM_SEQ),
            ("deliveries", headers::DLQ_DELIVERIES),
            ("msg_id", headers::DLQ_MSG_ID),
            ("replay_of", headers::REPLAY_OF),
        ] {
            if let Some(value) = self.header(name) {
                out.insert(key.into(), json!(value));
            }
        }
        out
    }

    fn matches(&self, filter: &DlqFilter) -> bool {
        let time = time::system_time(self.time);
        filter
            .group
            .as_deref()
            .is_none_or(|g| self.header(headers::DLQ_GROUP) == Some(g))
            && filter
                .error_class
                .as_deref()
                .is_none_or(|c| self.header(headers::DLQ_ERROR_CLASS) == Some(c))
            && filter.since.is_none_or(|since| time >= since.0)
            && filter.until.is_none_or(|until| time <= until.0)
    }

    /// The dead letter's own id: its `Nats-Msg-Id` (`dlq:{group}:{seq}`), or its place in the
    /// dead-letter stream when it has none.
    fn id(&self, stream: &str) -> String {
        self.header(headers::MSG_ID)
            .map_or_else(|| format!("{stream}:{}", self.seq), str::to_owned)
    }
}

pub(crate) async fn list(
    nats: &Nats,
    args: &DlqListArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    let stream = nats.dead_letter_stream().await?;
    let letters = read(nats, &stream, &args.filter, args.limit).await?;
    if args.json {
        for letter in &letters {
            serde_json::to_writer(&mut *out, &letter.summary()).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if letters.is_empty() {
        writeln!(out, "no dead letters")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:>6}  {:<24}  {:<40}  {:<24}  {:<14}  {:>5}  {:<6}  ERROR",
        "SEQ", "TIME", "TOPIC", "GROUP", "CLASS", "DELIV", "REPLAY"
    )?;
    for l in &letters {
        let error: String = l
            .header(headers::DLQ_ERROR)
            .unwrap_or("")
            .chars()
            .take(80)
            .collect();
        writeln!(
            out,
            "{:>6}  {:<24}  {:<40}  {:<24}  {:<14}  {:>5}  {:<6}  {error}",
            l.seq,
            time::format(l.time),
            l.header(headers::DLQ_TOPIC).unwrap_or("?"),
            l.header(headers::DLQ_GROUP).unwrap_or("?"),
            l.header(headers::DLQ_ERROR_CLASS).unwrap_or("?"),
            l.header(headers::DLQ_DELIVERIES).unwrap_or("?"),
            if l.header(headers::REPLAY_OF).is_some() {
                "yes"
            } else {
                "no"
            },
        )?;
    }
    writeln!(out, "{} dead letter(s)", letters.len())?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn show(
    nats: &Nats,
    catalog: &Catalog,
    args: &DlqShowArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    let stream = nats.dead_letter_stream().await?;
    let letter = get(&stream, &nats.config.dead_letter.stream_name, args.seq).await?;
    let mut shown = letter.summary();
    shown.insert("headers".into(), json::headers(letter.headers.as_ref()));
    json::add_payload(
        &mut shown,
        catalog,
        &letter.subject,
        letter.headers.as_ref(),
        &letter.payload,
    );
    serde_json::to_writer_pretty(&mut *out, &shown).map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn replay(
    nats: &Nats,
    args: &DlqReplayArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    if args.seqs.is_empty() && !args.filter.is_set() && !args.all {
        bail!(
            "say which dead letters to replay: sequence numbers, a filter (`--topic`, `--group`, \
             `--error-class`, `--since`, `--until`), or `--all`"
        );
    }
    let stream_name = nats.config.dead_letter.stream_name.clone();
    let stream = nats.dead_letter_stream().await?;
    let mut report = Report::default();
    let letters = if args.seqs.is_empty() {
        read(nats, &stream, &args.filter, None).await?
    } else {
        let mut letters = Vec::new();
        for &seq in &args.seqs {
            match get(&stream, &stream_name, seq).await {
                Ok(l) if l.matches(&args.filter) => letters.push(l),
                Ok(_) => report.failed(
                    seq,
                    "not replayed: it does not match the filter given with its sequence number",
                ),
                Err(e) => report.failed(seq, &e.to_string()),
            }
        }
        letters
    };

    // Where each topic goes now, asked once per topic.
    let mut capture: HashMap<String, Result<String, String>> = HashMap::new();
    for letter in letters {
        let id = letter.id(&stream_name);
        if letter.header(headers::REPLAY_OF).is_some() && !args.force {
            report.skipped(letter.seq);
            continue;
        }
        let Some(topic) = letter.header(headers::DLQ_TOPIC).map(str::to_owned) else {
            report.failed(
                letter.seq,
                &format!(
                    "no `{}` header: not a dead letter of the bus",
                    headers::DLQ_TOPIC
                ),
            );
            continue;
        };
        if !capture.contains_key(&topic) {
            let found = nats.stream_capturing(&topic).await;
            capture.insert(topic.clone(), found);
        }
        if let Err(why) = &capture[&topic] {
            report.failed(letter.seq, &format!("{why}; the dead letter is kept"));
            continue;
        }
        if args.dry_run {
            report.would_replay(letter.seq, &topic);
            continue;
        }
        let ack = crate::publish::send(
            nats,
            &topic,
            replay_headers(letter.headers.as_ref(), &id),
            letter.payload.clone(),
        )
        .await;
        match ack {
            Ok(ack) => match stream.delete_message(letter.seq).await {
                Ok(_) => report.replayed(letter.seq, &topic, &ack),
                Err(e) => {
                    report.replayed(letter.seq, &topic, &ack);
                    report.failed(
                        letter.seq,
                        &format!(
                            "republished, but not removed from `{stream_name}` ({e}): replaying \
                             it again within the stream's duplicate window is dropped as a \
                             duplicate; remove it by hand"
                        ),
                    );
                }
            },
            Err(e) => report.failed(letter.seq, &format!("{e}; the dead letter is kept")),
        }
    }
    report.write(out, args.json, args.dry_run)?;
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The headers of the replay of a dead letter whose own id is `id`: the original event's
/// headers (the `Bus-Dlq-*` ones dropped), `Bus-Replay-Of: {id}`, and `Nats-Msg-Id:
/// replay:{id}`, so a second replay of the same dead letter within the duplicate window is
/// stored once, while the original id would have been dropped as a duplicate.
fn replay_headers(dead_letter: Option<&HeaderMap>, id: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(map) = dead_letter {
        for (name, values) in map.iter() {
            let name: &str = name.as_ref();
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("bus-dlq-")
                || lower == headers::MSG_ID.to_ascii_lowercase()
                || lower == headers::REPLAY_OF.to_ascii_lowercase()
            {
                continue;
            }
            for value in values {
                out.append(name, value.as_str());
            }
        }
    }
    out.insert(headers::MSG_ID, format!("replay:{id}").as_str());
    out.insert(headers::REPLAY_OF, id);
    out
}

/// The dead letter at `seq`.
async fn get(stream: &Stream, stream_name: &str, seq: u64) -> Result<DeadLetter, Error> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    match stream.get_raw_message(seq).await {
        Ok(m) => Ok(DeadLetter {
            seq: m.sequence,
            time: m.time,
            subject: m.subject.to_string(),
            headers: Some(m.headers),
            payload: m.payload,
        }),
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => bail!(
            "no dead letter {seq} in stream `{stream_name}` (`bus dlq list` shows what there is)"
        ),
        Err(e) => bail!("reading dead letter {seq} of `{stream_name}`: {e}"),
    }
}

/// The dead letters `filter` selects, oldest first, at most `limit`: read through an ephemeral
/// ordered consumer up to the last one stored when it started.
async fn read(
    nats: &Nats,
    stream: &Stream,
    filter: &DlqFilter,
    limit: Option<usize>,
) -> Result<Vec<DeadLetter>, Error> {
    time::check_window(filter.since, filter.until)?;
    let prefix = &nats.config.dead_letter.subject_prefix;
    let subject = match &filter.topic {
        Some(topic) if bus::topic::is_valid_filter(topic) => format!("{prefix}.{topic}"),
        Some(topic) => bail!(
            "`--topic {topic}` is not a valid topic filter: dot-separated tokens, `*` for one \
             token, `>` for the rest"
        ),
        None => format!("{prefix}.>"),
    };
    let deliver_policy = match filter.since {
        Some(since) => since.deliver_policy()?,
        None => DeliverPolicy::All,
    };
    let name = &nats.config.dead_letter.stream_name;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            description: Some("bus dlq".into()),
            filter_subject: subject,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::new(format!("cannot read stream `{name}`: {e}")))?;
    let mut letters = Vec::new();
    if consumer.cached_info().num_pending == 0 || limit == Some(0) {
        return Ok(letters);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::new(format!("cannot read stream `{name}`: {e}")))?;
    loop {
        let message = match tokio::time::timeout(READ_TIMEOUT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => bail!("reading stream `{name}` failed: {e}"),
            Ok(None) => bail!("the server ended the reading of stream `{name}`"),
            Err(_) => bail!(
                "reading stream `{name}`: no message for {READ_TIMEOUT:?} although the server \
                 reported more (read {} so far)",
                letters.len()
            ),
        };
        let info = message
            .info()
            .map_err(|e| Error::new(format!("a message without JetStream metadata: {e}")))?;
        let (seq, published, last) = (info.stream_sequence, info.published, info.pending == 0);
        let letter = DeadLetter {
            seq,
            time: published,
            subject: message.subject.to_string(),
            headers: message.headers.clone(),
            payload: message.payload.clone(),
        };
        if filter
            .until
            .is_some_and(|until| time::system_time(letter.time) > until.0)
        {
            break;
        }
        if letter.matches(filter) {
            letters.push(letter);
            if limit.is_some_and(|n| letters.len() >= n) {
                break;
            }
        }
        if last {
            break;
        }
    }
    Ok(letters)
}

/// What a replay did, dead letter by dead letter.
#[derive(Default)]
struct Report {
    replayed: Vec<Value>,
    skipped: Vec<u64>,
    failures: Vec<Value>,
}

impl Report {
    fn replayed(
        &mut self,
        seq: u64,
        topic: &str,
        ack: &async_nats::jetstream::publish::PublishAck,
    ) {
        self.replayed.push(json!({
            "seq": seq, "topic": topic, "stream": ack.stream, "stream_seq": ack.sequence,
            "duplicate": ack.duplicate,
        }));
    }

    fn would_replay(&mut self, seq: u64, topic: &str) {
        self.replayed.push(json!({ "seq": seq, "topic": topic }));
    }

    fn skipped(&mut self, seq: u64) {
        self.skipped.push(seq);
    }

    fn failed(&mut self, seq: u64, error: &str) {
        self.failures.push(json!({ "seq": seq, "error": error }));
    }

    fn write(&self, out: &mut dyn Write, as_json: bool, dry_run: bool) -> std::io::Result<()> {
        if as_json {
            let key = if dry_run { "would_replay" } else { "replayed" };
            serde_json::to_writer(
                &mut *out,
                &json!({ key: self.replayed, "skipped": self.skipped, "failed": self.failures }),
            )?;
            return writeln!(out);
        }
        for r in &self.replayed {
            match r.get("stream_seq") {
                Some(at) => writeln!(
                    out,
                    "replayed dead letter {} to `{}` (stream {} sequence {at}{})",
                    r["seq"],
                    r["topic"].as_str().unwrap_or(""),
                    r["stream"].as_str().unwrap_or(""),
                    if r["duplicate"] == true {
                        ", a duplicate: already stored"
                    } else {
                        ""
                    },
                )?,
                None => writeln!(
                    out,
                    "would replay dead letter {} to `{}`",
                    r["seq"],
                    r["topic"].as_str().unwrap_or("")
                )?,
            }
        }
        for seq in &self.skipped {
            writeln!(
                out,
                "skipped dead letter {seq}: it is the dead letter of a replay (`--force` replays \
                 it again)"
            )?;
        }
        for f in &self.failures {
            writeln!(
                out,
                "failed dead letter {}: {}",
                f["seq"],
                f["error"].as_str().unwrap_or("")
            )?;
        }
        writeln!(
            out,
            "{} {}, {} skipped, {} failed",
            if dry_run { "would replay" } else { "replayed" },
            self.replayed.len(),
            self.skipped.len(),
            self.failures.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_keeps_the_original_headers_and_says_what_it_replays() {
        let mut dead = HeaderMap::new();
        dead.insert("Nats-Msg-Id", "dlq:risk:42");
        dead.insert("Bus-Event-Type", "cqc.events.v1.PriceUpdated");
        dead.insert("traceparent", "00-abc-def-01");
        dead.insert("tenant", "t-7");
        dead.insert("Bus-Dlq-Topic", "cqc.events.v1.price_updated");
        dead.insert("Bus-Dlq-Msg-Id", "evt-1");
        dead.insert("Bus-Dlq-Error", "boom");
        let h = replay_headers(Some(&dead), "dlq:risk:42");
        let get = |n: &str| h.get(n).map(|v| v.as_str().to_owned());
        assert_eq!(get("Nats-Msg-Id").as_deref(), Some("replay:dlq:risk:42"));
        assert_eq!(get("Bus-Replay-Of").as_deref(), Some("dlq:risk:42"));
        assert_eq!(
            get("Bus-Event-Type").as_deref(),
            Some("cqc.events.v1.PriceUpdated")
        );
        assert_eq!(get("tenant").as_deref(), Some("t-7"));
        assert_eq!(get("traceparent").as_deref(), Some("00-abc-def-01"));
        for dlq in ["Bus-Dlq-Topic", "Bus-Dlq-Msg-Id", "Bus-Dlq-Error"] {
            assert_eq!(get(dlq), None, "{dlq} is dropped");
        }
    }
}
