//! `bus status`: the events and dead-letter streams, the consumer groups of the events stream,
//! and dead letters per topic.

use std::io::Write;
use std::process::ExitCode;

use async_nats::jetstream::stream::Stream;
use futures::TryStreamExt as _;
use serde_json::{Value, json};

use crate::args::StatusArgs;
use crate::error::Error;
use crate::nats::Nats;
use crate::time;

pub(crate) async fn status(
    nats: &Nats,
    args: &StatusArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    let config = &nats.config;
    let mut streams = Vec::new();
    let mut consumers = Vec::new();
    let mut dead_letters = Vec::new();

    match nats.events_stream().await {
        Ok(mut stream) => {
            streams.push(stream_json(&mut stream, "events").await?);
            consumers = groups(&stream).await?;
        }
        Err(e) => streams.push(missing(&config.stream_name, "events", &e)),
    }
    match nats.dead_letter_stream().await {
        Ok(mut stream) => {
            streams.push(stream_json(&mut stream, "dead letters").await?);
            dead_letters = per_topic(&stream, &config.dead_letter.subject_prefix).await?;
        }
        Err(e) => streams.push(missing(&config.dead_letter.stream_name, "dead letters", &e)),
    }

    let status = json!({
        "servers": config.servers,
        "streams": streams,
        "consumers": consumers,
        "dead_letters": dead_letters,
    });
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &status).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        write_tables(out, &status)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn stream_json(stream: &mut Stream, role: &str) -> Result<Value, Error> {
    let info = stream
        .info()
        .await
        .map_err(|e| Error::new(format!("reading stream info: {e}")))?;
    let state = &info.state;
    Ok(json!({
        "name": info.config.name,
        "role": role,
        "exists": true,
        "subjects": info.config.subjects,
        "messages": state.messages,
        "bytes": state.bytes,
        "first_seq": state.first_sequence,
        "last_seq": state.last_sequence,
        "consumers": state.consumer_count,
    }))
}

fn missing(name: &str, role: &str, error: &Error) -> Value {
    json!({ "name": name, "role": role, "exists": false, "error": error.to_string() })
}

/// The durable consumers of `stream` (one per subscription group and filter), by group.
async fn groups(stream: &Stream) -> Result<Vec<Value>, Error> {
    let mut infos: Vec<_> = stream
        .consumers()
        .try_collect()
        .await
        .map_err(|e| Error::new(format!("listing consumers: {e}")))?;
    infos.retain(|c| c.config.durable_name.is_some());
    let mut out: Vec<Value> = infos
        .into_iter()
        .map(|c| {
            let (group, filter) = group_of(c.config.description.as_deref())
                .unwrap_or_else(|| (c.name.clone(), c.config.filter_subject.clone()));
            json!({
                "group": group,
                "filter": filter,
                "consumer": c.name,
                "pending": c.num_pending,
                "ack_pending": c.num_ack_pending,
                "redelivered": c.num_redelivered,
                "waiting": c.num_waiting,
                "delivered_seq": c.delivered.stream_sequence,
                "ack_floor_seq": c.ack_floor.stream_sequence,
                "last_active": c.delivered.last_active.map(time::format),
            })
        })
        .collect();
    out.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
    Ok(out)
}

/// The group and filter the bus writes in a consumer's description: "bus group `g` on `f`".
fn group_of(description: Option<&str>) -> Option<(String, String)> {
    let rest = description?.strip_prefix("bus group `")?;
    let (group, rest) = rest.split_once("` on `")?;
    let filter = rest.strip_suffix('`')?;
    Some((group.to_owned(), filter.to_owned()))
}

/// Dead letters per original topic.
async fn per_topic(stream: &Stream, prefix: &str) -> Result<Vec<Value>, Error> {
    let filter = format!("{prefix}.>");
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(&filter)
        .await
        .map_err(|e| Error::new(format!("counting dead letters: {e}")))?
        .try_collect()
        .await
        .map_err(|e| Error::new(format!("counting dead letters: {e}")))?;
    let mut out: Vec<(String, usize)> = subjects
        .into_iter()
        .map(|(subject, count)| {
            let topic = subject
                .strip_prefix(prefix)
                .and_then(|t| t.strip_prefix('.'))
                .unwrap_or(&subject)
                .to_owned();
            (topic, count)
        })
        .collect();
    out.sort();
    Ok(out
        .into_iter()
        .map(|(topic, count)| json!({ "topic": topic, "count": count }))
        .collect())
}

fn write_tables(out: &mut dyn Write, status: &Value) -> std::io::Result<()> {
    let empty = Vec::new();
    let rows = |key: &str| status[key].as_array().unwrap_or(&empty).clone();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    writeln!(out, "STREAMS")?;
    writeln!(
        out,
        "  {:<24}  {:<12}  {:>10}  {:>12}  {:>9}  SUBJECTS",
        "NAME", "ROLE", "MESSAGES", "BYTES", "CONSUMERS"
    )?;
    for s in rows("streams") {
        if s["exists"] == true {
            let subjects: Vec<String> = s["subjects"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(text)
                .collect();
            writeln!(
                out,
                "  {:<24}  {:<12}  {:>10}  {:>12}  {:>9}  {}",
                text(&s["name"]),
                text(&s["role"]),
                text(&s["messages"]),
                text(&s["bytes"]),
                text(&s["consumers"]),
                subjects.join(", ")
            )?;
        } else {
            writeln!(
                out,
                "  {:<24}  {:<12}  missing: {}",
                text(&s["name"]),
                text(&s["role"]),
                text(&s["error"])
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "CONSUMER GROUPS")?;
    let groups = rows("consumers");
    if groups.is_empty() {
        writeln!(out, "  none")?;
    } else {
        writeln!(
            out,
            "  {:<32}  {:<32}  {:>8}  {:>11}  {:>11}  LAST ACTIVE",
            "GROUP", "FILTER", "PENDING", "ACK PENDING", "REDELIVERED"
        )?;
        for c in groups {
            writeln!(
                out,
                "  {:<32}  {:<32}  {:>8}  {:>11}  {:>11}  {}",
                text(&c["group"]),
                text(&c["filter"]),
                text(&c["pending"]),
                text(&c["ack_pending"]),
                text(&c["redelivered"]),
                text(&c["last_active"])
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "DEAD LETTERS")?;
    let dead = rows("dead_letters");
    if dead.is_empty() {
        writeln!(out, "  none")?;
    } else {
        writeln!(out, "  {:<48}  {:>8}", "TOPIC", "COUNT")?;
        for d in dead {
            writeln!(out, "  {:<48}  {:>8}", text(&d["topic"]), text(&d["count"]))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_comes_from_the_description_the_bus_writes() {
        assert_eq!(
            group_of(Some("bus group `risk-on_price` on `cqc.events.v1.>`")),
            Some(("risk-on_price".into(), "cqc.events.v1.>".into()))
        );
        assert_eq!(group_of(Some("made by hand")), None);
        assert_eq!(group_of(None), None);
    }
}
