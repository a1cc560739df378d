//! `bus tail`: live events as JSON lines, from an ephemeral ordered consumer that no group
//! notices (it acknowledges nothing and the server removes it when the command stops).

use std::io::Write;
use std::process::ExitCode;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt as _;
use serde_json::{Map, json};

use crate::args::TailArgs;
use crate::catalog::Catalog;
use crate::error::{Error, bail};
use crate::nats::Nats;
use crate::{json, time};

pub(crate) async fn tail(
    nats: &Nats,
    catalog: &Catalog,
    args: &TailArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, Error> {
    if let Some(filter) = &args.filter
        && !bus::topic::is_valid_filter(filter)
    {
        bail!(
            "`{filter}` is not a valid topic filter: dot-separated tokens, `*` for one token, \
             `>` for the rest (e.g. `cqc.events.v1.*`)"
        );
    }
    let stream_name = match (&args.stream, &args.filter) {
        (Some(name), _) => name.clone(),
        (None, Some(filter)) => nats.stream_capturing(filter).await.map_err(Error::new)?,
        (None, None) => nats.config.stream_name.clone(),
    };
    let stream = nats
        .stream(
            &stream_name,
            "`--stream` or `stream_name` (BUS_STREAM_NAME)",
        )
        .await?;
    let deliver_policy = match (args.from_start, args.since) {
        (true, _) => DeliverPolicy::All,
        (false, Some(since)) => since.deliver_policy()?,
        (false, None) => DeliverPolicy::New,
    };
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            description: Some("bus tail".into()),
            filter_subject: args.filter.clone().unwrap_or_default(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::new(format!("cannot follow stream `{stream_name}`: {e}")))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::new(format!("cannot follow stream `{stream_name}`: {e}")))?;

    let mut printed = 0u64;
    if args.count == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            _ = tokio::signal::ctrl_c() => break,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => bail!("following stream `{stream_name}` failed: {e}"),
            None => bail!("the server ended the stream of `{stream_name}`"),
        };
        let info = message
            .info()
            .map_err(|e| Error::new(format!("a message without JetStream metadata: {e}")))?;
        let mut line = Map::new();
        line.insert("topic".into(), json!(message.subject.as_str()));
        line.insert("stream".into(), json!(info.stream));
        line.insert("seq".into(), json!(info.stream_sequence));
        line.insert("time".into(), json!(time::format(info.published)));
        line.insert("headers".into(), json::headers(message.headers.as_ref()));
        json::add_payload(
            &mut line,
            catalog,
            &message.subject,
            message.headers.as_ref(),
            &message.payload,
        );
        serde_json::to_writer(&mut *out, &line)
            .map_err(|e| Error::from(std::io::Error::from(e)))?;
        writeln!(out)?;
        out.flush()?;
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
