//! Events the server gave up on. When the deliveries of a message run out with no outcome (the
//! consumer stopped during the last one, or its acknowledgement never came), the bus never sees
//! a failure to dead-letter; the server publishes a max-deliveries advisory instead. This task
//! listens for the advisories of one durable consumer, fetches the message by its stream
//! sequence, and dead-letters it like any other, with class
//! [`ErrorClass::MaxDeliveries`](crate::ErrorClass::MaxDeliveries).
//!
//! The members of a group listen in a queue group, so one of them handles each advisory; the
//! dead letter's message id (`dlq:{group}:{sequence}`) makes a repeat harmless.

use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::publish::headers_from;
use crate::delivery::DeadLetter;
use crate::{Delivery, ErrorClass, HandlerError};

/// The part of `io.nats.jetstream.advisory.v1.max_deliver` this task reads.
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

/// Dead-letters the messages durable consumer `durable` on `stream` (the subscription on
/// `filter` in `group`) gave up on, until `shutdown`.
pub(crate) async fn watch_max_deliveries(
    bus: Arc<Inner>,
    stream: String,
    durable: String,
    filter: String,
    group: Arc<str>,
    shutdown: CancellationToken,
) {
    let subject = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{durable}");
    let mut advisories = match bus.client.queue_subscribe(subject, durable.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                consumer = %durable, error = %e,
                "cannot listen for max-deliveries advisories; events the server gives up on \
                 will not be dead-lettered"
            );
            return;
        }
    };
    loop {
        let advisory = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = advisories.next() => match a {
                Some(a) => a,
                None => return,
            },
        };
        let gave_up: MaxDeliveries = match serde_json::from_slice(&advisory.payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(consumer = %durable, error = %e, "unreadable max-deliveries advisory");
                continue;
            }
        };
        if dead_letter(&bus, &stream, &group, gave_up).await {
            crate::telemetry::dead_lettered_by_server(&filter, &group);
        }
    }
}

/// Dead-letters the message the server gave up on; whether it is stored.
async fn dead_letter(bus: &Inner, stream: &str, group: &Arc<str>, gave_up: MaxDeliveries) -> bool {
    let sequence = gave_up.stream_seq;
    let fetched = match bus.js.get_stream_no_info(stream).await {
        Ok(s) => s.get_raw_message(sequence).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let msg = match fetched {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(
                stream, sequence, error = %e,
                "the server gave up delivering an event that cannot be read anymore (removed by \
                 the stream's limits?); it is not dead-lettered"
            );
            return false;
        }
    };
    let delivery = Delivery::new(
        msg.subject.as_str(),
        Arc::clone(group),
        headers_from(&msg.headers),
        u32::try_from(gave_up.deliveries).unwrap_or(u32::MAX),
        sequence,
        SystemTime::from(msg.time),
    );
    let error = HandlerError::new(
        ErrorClass::MaxDeliveries,
        format!(
            "the server stopped delivering the event after {} deliveries with no outcome (a \
             consumer stopped during the last one, or its acknowledgement did not come within \
             ack_wait)",
            gave_up.deliveries
        ),
    );
    let letter = DeadLetter::new(
        &bus.config.dead_letter,
        &delivery,
        msg.payload,
        &error,
        bus.max_payload(),
    );
    bus.store_dead_letter(&letter).await
}
