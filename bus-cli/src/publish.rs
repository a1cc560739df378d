//! `bus publish TOPIC JSON`: the JSON encoded into the topic's event type, published with the
//! headers the bus writes, and the stream's acknowledgement awaited.

use std::io::{Read, Write};
use std::process::ExitCode;

use async_nats::HeaderMap;
use bytes::Bytes;
use prost_reflect::{DynamicMessage, Value as Field};
use serde_json::json;

use crate::args::PublishArgs;
use crate::catalog::Catalog;
use crate::error::{Error, bail};
use crate::nats::Nats;

pub(crate) async fn publish(
    nats: &Nats,
    catalog: &Catalog,
    args: &PublishArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    let message = catalog.event(&args.topic)?;
    let text = if args.json == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Error::new(format!("reading the JSON from standard input: {e}")))?;
        text
    } else {
        args.json.clone()
    };
    let payload = catalog.encode(&message, &text)?;
    let id = match &args.id {
        Some(id) => id.clone(),
        None => event_id(&message, &payload).unwrap_or_else(|| nuid::next().to_string()),
    };
    // Checked before the NATS client sees them: it cannot send a line break in a header.
    let wire: bus::Headers = [
        (bus::headers::MSG_ID, id.as_str()),
        (bus::headers::EVENT_TYPE, message.full_name()),
    ]
    .into_iter()
    .map(|(n, v)| (n, v.to_owned()))
    .collect();
    wire.validate()?;
    let mut headers = HeaderMap::new();
    headers.insert(bus::headers::MSG_ID, id.as_str());
    headers.insert(bus::headers::EVENT_TYPE, message.full_name());
    // Leave room for the headers of the event's dead letter, as the bus does.
    let max_payload = nats.client.server_info().max_payload;
    // `NATS/1.0\r\n`, `Name: Value\r\n` per header, and a blank line.
    let header_len: usize = 12
        + wire
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>();
    let size = payload.len() + header_len;
    let max = max_payload - bus::headers::dead_letter_headroom(max_payload);
    if size > max {
        bail!(
            "the event is {size} bytes with its headers; the server takes {max} (its \
             `max_payload` less room for a dead letter's headers)"
        );
    }

    let ack = send(nats, &args.topic, headers, Bytes::from(payload)).await?;
    serde_json::to_writer(
        &mut *out,
        &json!({
            "topic": args.topic,
            "stream": ack.stream,
            "seq": ack.sequence,
            "id": id,
            "duplicate": ack.duplicate,
        }),
    )
    .map_err(std::io::Error::from)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// Publishes and waits for the stream's acknowledgement, with errors that say what to check.
pub(crate) async fn send(
    nats: &Nats,
    topic: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<async_nats::jetstream::publish::PublishAck, Error> {
    use async_nats::jetstream::context::PublishErrorKind;
    let describe = |e: async_nats::jetstream::context::PublishError| match e.kind() {
        PublishErrorKind::StreamNotFound => Error::new(format!(
            "no stream captures topic `{topic}`: check `stream.subjects` (BUS_STREAM_SUBJECTS) \
             of the stream that should hold it"
        )),
        PublishErrorKind::TimedOut => Error::new(format!(
            "publishing to `{topic}`: no acknowledgement within {:?} (`publish_timeout`, \
             BUS_PUBLISH_TIMEOUT); the event may or may not be stored: publishing it again with \
             the same id is safe",
            nats.config.publish_timeout
        )),
        _ => Error::new(format!("publishing to `{topic}`: {e}")),
    };
    let ack = nats
        .js
        .publish_with_headers(topic.to_owned(), headers, payload)
        .await
        .map_err(describe)?;
    let wait = nats
        .config
        .publish_timeout
        .max(std::time::Duration::from_secs(1));
    match tokio::time::timeout(wait, ack).await {
        Ok(ack) => ack.map_err(describe),
        Err(_) => Err(Error::new(format!(
            "publishing to `{topic}`: no acknowledgement within {wait:?} (`publish_timeout`, \
             BUS_PUBLISH_TIMEOUT); the event may or may not be stored: publishing it again with \
             the same id is safe"
        ))),
    }
}

/// The event's `event_id` field, when it has a non-empty one.
fn event_id(message: &prost_reflect::MessageDescriptor, payload: &[u8]) -> Option<String> {
    let field = message.get_field_by_name("event_id")?;
    let decoded = DynamicMessage::decode(message.clone(), payload).ok()?;
    match decoded.get_field(&field).as_ref() {
        Field::String(id) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }
}
