//! Publishing with the stream's acknowledgement: retries with the same message id, clear
//! errors, and a pipelined batch.

use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::borrow::Cow;

use async_nats::HeaderMap;
use async_nats::connection::State;
use async_nats::header::{HeaderName, IntoHeaderName};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Inner;
use crate::delivery::DeadLetter;
use crate::headers as names;
use crate::trace::{Producer, TraceHeaders};
use crate::{Error, Event, Headers, PublishAck};

/// Acknowledgements in flight at most during a batch publish.
pub(crate) const BATCH_WINDOW: usize = 1000;

/// What a failed publish attempt means.
enum Failure {
    /// Try again with the same message id.
    Transient(String),
    /// Trying again cannot help.
    Fatal(Error),
}

/// The NATS form of `headers`, which are valid (checked when published).
pub(crate) fn header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (i, (fixed, text, value)) in headers.iter_names_static().enumerate() {
        let name = match fixed {
            Some(fixed) => HeaderName::from_static(fixed),
            None => text.into_header_name(),
        };
        // A new name is inserted, one lookup less than appending; a repeated one (in any case,
        // to be safe whatever case rule the map keeps) is appended.
        let again = headers
            .iter()
            .take(i)
            .any(|(n, _)| n.eq_ignore_ascii_case(text));
        if again {
            map.append(name, value);
        } else {
            map.insert(name, value);
        }
    }
    map
}

/// The bus's form of a NATS header map.
pub(crate) fn headers_from(map: &HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        for v in values {
            headers.append_copy(name, v.as_str());
        }
    }
    headers
}

fn to_ack(a: &async_nats::jetstream::publish::PublishAck) -> PublishAck {
    PublishAck {
        sequence: a.sequence,
        duplicate: a.duplicate,
    }
}

/// Publishes under way, so that `close()` can wait for them before it drains the connection.
#[derive(Debug, Default)]
pub(crate) struct InFlightPublishes {
    count: AtomicUsize,
    idle: Notify,
}

/// One publish (or batch) under way; dropping it ends it.
pub(crate) struct PublishGuard<'a>(&'a InFlightPublishes);

impl Drop for PublishGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlightPublishes {
    /// Waits until no publish is under way.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A message to publish, which can be built again for a retry with the same message id.
pub(crate) trait Outgoing: Send + Sync {
    /// The message: payload and headers.
    fn build(&self) -> PublishMessage;
    /// Its size as the server counts it: payload and headers.
    fn size(&self) -> usize;
}

/// A payload and its headers, as `publish_raw` and dead letters give them.
pub(crate) struct Prepared<'a> {
    pub(crate) payload: &'a Bytes,
    pub(crate) headers: &'a Headers,
}

impl Outgoing for Prepared<'_> {
    fn build(&self) -> PublishMessage {
        PublishMessage::build()
            .payload(self.payload.clone())
            .headers(header_map(self.headers))
    }

    fn size(&self) -> usize {
        self.payload.len() + self.headers.wire_len()
    }
}

/// A typed event: encoded straight into a NATS message, and again, with the same message id
/// and trace context, for a retry, so nothing is kept for retries but the event's reference.
pub(crate) struct EventOut<'a, E> {
    event: &'a E,
    id: Cow<'a, str>,
    trace: Option<TraceHeaders>,
}

impl<'a, E: Event> EventOut<'a, E> {
    /// The message of `event`: its id (or a new one) and type, and the trace headers of
    /// `trace`.
    pub(crate) fn new(event: &'a E, trace: Option<&Producer>) -> Result<Self, Error> {
        let id = match event.event_id() {
            Some(id) if !id.is_empty() => {
                crate::headers::check_message_id(id)?;
                Cow::Borrowed(id)
            }
            _ => Cow::Owned(crate::outgoing::new_message_id()),
        };
        let trace = trace.map(|trace| {
            trace.message_id(&id);
            trace.headers()
        });
        Ok(EventOut { event, id, trace })
    }
}

impl<E: Event> Outgoing for EventOut<'_, E> {
    fn build(&self) -> PublishMessage {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static(names::MSG_ID), self.id.as_ref());
        headers.insert(HeaderName::from_static(names::EVENT_TYPE), E::FULL_NAME);
        for (name, value) in self.trace.iter().flat_map(TraceHeaders::iter) {
            let name = match name {
                names::TRACEPARENT => HeaderName::from_static(names::TRACEPARENT),
                other => other.into_header_name(),
            };
            headers.insert(name, value);
        }
        PublishMessage::build()
            .payload(Bytes::from(self.event.encode_to_vec()))
            .headers(headers)
    }

    fn size(&self) -> usize {
        let line = |name: &str, value: &str| name.len() + 4 + value.len();
        let mut headers = "NATS/1.0\r\n\r\n".len()
            + line(names::MSG_ID, &self.id)
            + line(names::EVENT_TYPE, E::FULL_NAME);
        headers += self.trace.as_ref().map_or(0, TraceHeaders::wire_len);
        self.event.encoded_len() + headers
    }
}

impl Inner {
    /// Starts a publish, unless the bus no longer takes them. Counted first and checked after,
    /// so `close()` either sees it under way or it sees the bus closed.
    pub(crate) fn begin_publish(&self) -> Result<PublishGuard<'_>, Error> {
        self.publishing.count.fetch_add(1, Ordering::SeqCst);
        let guard = PublishGuard(&self.publishing);
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(guard)
    }

    /// The server's `max_payload`, or the NATS default before the server said.
    pub(crate) fn max_payload(&self) -> usize {
        match self.client.max_payload() {
            0 => 1024 * 1024,
            max => max,
        }
    }

    /// Checks the size of a message against the server's `max_payload` (less the dead-letter
    /// headroom).
    fn check_size(&self, topic: &str, message: &impl Outgoing) -> Result<(), Error> {
        crate::outgoing::check_message_size(topic, message.size(), self.max_payload())
    }

    /// How long one publish attempt waits for its acknowledgement (the timeout of the
    /// publishing context), before it is retried with the same message id.
    pub(crate) fn attempt_timeout(config: &crate::EventBusConfig) -> Duration {
        (config.publish_timeout / 3).max(Duration::from_millis(500))
    }

    /// Publishes one message and waits for its acknowledgement, retrying transient failures with
    /// the same headers (so the same `Nats-Msg-Id`) until `publish_timeout`.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        message: &impl Outgoing,
    ) -> Result<PublishAck, Error> {
        let _publishing = self.begin_publish()?;
        self.check_size(topic, message)?;
        let deadline = Instant::now() + self.config.publish_timeout;
        self.publish_until(topic, message, deadline, None).await
    }

    /// Stores a dead letter, retrying transient failures until it is stored (its message id
    /// `dlq:{group}:{sequence}` makes retries safe), also while the bus closes. Returns whether
    /// it is stored; a permanent failure is logged and leaves the original unacknowledged.
    pub(crate) async fn store_dead_letter(&self, letter: &DeadLetter) -> bool {
        let mut failures = 0u32;
        loop {
            // Not checked against the limit: the headroom kept on every publish is for this.
            let deadline = Instant::now() + self.config.publish_timeout;
            let message = Prepared {
                payload: &letter.payload,
                headers: &letter.headers,
            };
            let stored = self
                .publish_until(&letter.subject, &message, deadline, None)
                .await;
            match stored {
                Ok(_) => return true,
                Err(e) if e.is_retryable() => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "dead letter not stored yet; retrying");
                    let delay = Duration::from_millis(100u64 << failures.min(5));
                    tokio::time::sleep(delay.min(Duration::from_secs(3))).await;
                }
                Err(e) => {
                    tracing::error!(
                        subject = %letter.subject, error = %e,
                        "dead letter cannot be stored; the message is left unacknowledged in its stream"
                    );
                    return false;
                }
            }
        }
    }

    async fn publish_until(
        &self,
        topic: &str,
        message: &impl Outgoing,
        deadline: Instant,
        mut last: Option<String>,
    ) -> Result<PublishAck, Error> {
        let mut delay = Duration::from_millis(25);
        let mut attempts = 0u32;
        loop {
            let now = Instant::now();
            if last.is_some() {
                if now + delay >= deadline {
                    return Err(self.gave_up(topic, attempts, last));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let wait = remaining.min(Self::attempt_timeout(&self.config));
            // The publishing context bounds sending and the ack by the attempt timeout; the
            // outer timeout only cuts the last attempt at the deadline.
            let attempt = async {
                self.publisher
                    .send_publish(topic.to_owned(), message.build())
                    .await?
                    .await
            };
            match tokio::time::timeout(wait, attempt).await {
                Ok(Ok(ack)) => return Ok(to_ack(&ack)),
                Ok(Err(e)) => match self.classify(topic, message.size(), &e) {
                    Failure::Fatal(e) => return Err(e),
                    Failure::Transient(why) => last = Some(why),
                },
                Err(_) => last = Some(format!("no acknowledgement within {wait:?}")),
            }
            tracing::debug!(topic, attempts, error = last.as_deref(), "publish retried");
        }
    }

    fn gave_up(&self, topic: &str, attempts: u32, last: Option<String>) -> Error {
        if self.client.connection_state() != State::Connected {
            return Error::NotConnected;
        }
        Error::Timeout {
            what: format!(
                "waiting for the stream to store a publish on `{topic}` ({attempts} attempts \
                 with the same message id; last: {})",
                last.unwrap_or_default()
            ),
            after: self.config.publish_timeout,
        }
    }

    fn classify(&self, topic: &str, size: usize, e: &PublishError) -> Failure {
        match e.kind() {
            // No responders: nothing listens on the subject. For a subject one of our streams
            // captures this is a stream (leader) that is briefly unavailable.
            PublishErrorKind::StreamNotFound if self.capture.stream_of(topic).is_some() => {
                Failure::Transient("no stream answered (stream unavailable)".into())
            }
            PublishErrorKind::StreamNotFound => Failure::Fatal(Error::NoStream {
                topic: topic.to_owned(),
            }),
            PublishErrorKind::MaxPayloadExceeded => Failure::Fatal(Error::PayloadTooLarge {
                topic: topic.to_owned(),
                size,
                max: self.client.max_payload(),
            }),
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::MaxAckPending => Failure::Transient(e.to_string()),
            _ => {
                let js = e
                    .source()
                    .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
                match js {
                    // The stream is full and refuses new events (`discard = new` with a limit
                    // reached): waiting will not help.
                    Some(j) if j.error_code() == ErrorCode::STREAM_STORE_FAILED => {
                        Failure::Fatal(Error::Backend {
                            context: format!(
                                "the stream refused a publish on `{topic}`: it is full and \
                                 discards new events (a `max_msgs`, `max_bytes` or per-subject \
                                 limit with `discard = new`); raise the limit or let old events \
                                 expire"
                            ),
                            retryable: false,
                            source: j.to_string().into(),
                        })
                    }
                    Some(j) if j.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM => {
                        Failure::Fatal(Error::Backend {
                            context: format!(
                                "the stream refused a publish on `{topic}` of {size} bytes: it \
                                 is over the stream's `max_msg_size`"
                            ),
                            retryable: false,
                            source: j.to_string().into(),
                        })
                    }
                    // 503: no leader, cluster busy, JetStream restarting.
                    Some(j) if j.code() == 503 => Failure::Transient(j.to_string()),
                    Some(j) => Failure::Fatal(Error::Backend {
                        context: format!("the stream refused a publish on `{topic}`"),
                        retryable: false,
                        source: j.to_string().into(),
                    }),
                    None if self.closed.load(Ordering::Acquire)
                        && self.connection_drained.load(Ordering::Acquire) =>
                    {
                        Failure::Fatal(Error::Closed)
                    }
                    None => Failure::Transient(e.to_string()),
                }
            }
        }
    }

    /// Publishes many messages on `topic` with up to [`BATCH_WINDOW`] acknowledgements in
    /// flight. Stops at the first error after waiting for the ones in flight; returns the acks
    /// in input order, or [`Error::PartialBatch`] with exactly which events were stored. A
    /// batch that started before `close()` runs to its end (close waits for it).
    ///
    /// Only the bare ack futures are in flight (as a raw client would keep them); what a retry
    /// needs (the message, to build again with its id) waits in a slot, reused once the ack is
    /// in.
    pub(crate) async fn publish_batch<O: Outgoing>(
        &self,
        topic: &str,
        items: impl Iterator<Item = Result<O, Error>>,
    ) -> Result<Vec<PublishAck>, Error> {
        let _publishing = self.begin_publish()?;
        let mut batch = Batch {
            acks: Vec::with_capacity(items.size_hint().0),
            slots: Vec::new(),
            free: Vec::new(),
            first_error: None,
        };
        let mut inflight = FuturesUnordered::new();
        // Made once: a clone shares the bytes.
        let subject = async_nats::Subject::from(topic);
        for (i, item) in items.enumerate() {
            batch.acks.push(None);
            let checked = item.and_then(|message| {
                self.check_size(topic, &message)?;
                Ok(message)
            });
            let message = match checked {
                Ok(message) => message,
                Err(e) => {
                    record((i, Err(e)), &mut batch.acks, &mut batch.first_error);
                    break;
                }
            };
            while inflight.len() >= BATCH_WINDOW {
                if let Some(done) = inflight.next().await {
                    self.await_ack(topic, done, &mut batch).await;
                }
            }
            if batch.first_error.is_some() {
                break;
            }
            // Send now, in order; only the acknowledgements are awaited concurrently.
            let sent = self
                .publisher
                .send_publish(subject.clone(), message.build())
                .await;
            let slot = batch.free.pop().unwrap_or_else(|| {
                batch.slots.push(None);
                batch.slots.len() - 1
            });
            batch.slots[slot] = Some(InFlight {
                index: i,
                message,
                deadline: Instant::now() + self.config.publish_timeout,
            });
            match sent {
                // The ack future times out by itself after the attempt timeout.
                Ok(ack) => {
                    inflight
                        .push(std::future::IntoFuture::into_future(ack).map(move |r| (slot, r)));
                }
                Err(e) => self.await_ack(topic, (slot, Err(e)), &mut batch).await,
            }
        }
        while let Some(done) = inflight.next().await {
            self.await_ack(topic, done, &mut batch).await;
        }
        match batch.first_error {
            Some((failed, e)) => Err(Error::PartialBatch {
                acks: batch.acks,
                failed,
                source: Box::new(e),
            }),
            None => Ok(batch.acks.into_iter().flatten().collect()),
        }
    }

    /// Records the acknowledgement of one publish of a batch; a transient failure is retried
    /// here, with its id.
    async fn await_ack<O: Outgoing>(
        &self,
        topic: &str,
        (slot, result): (
            usize,
            Result<async_nats::jetstream::publish::PublishAck, PublishError>,
        ),
        batch: &mut Batch<O>,
    ) {
        let Some(p) = batch.slots[slot].take() else {
            return;
        };
        batch.free.push(slot);
        let result = match result {
            Ok(ack) => Ok(to_ack(&ack)),
            Err(e) => match self.classify(topic, p.message.size(), &e) {
                Failure::Fatal(e) => Err(e),
                Failure::Transient(why) => {
                    self.publish_until(topic, &p.message, p.deadline, Some(why))
                        .await
                }
            },
        };
        record((p.index, result), &mut batch.acks, &mut batch.first_error);
    }
}

/// What a batch publish keeps while acks are in flight.
struct Batch<O> {
    acks: Vec<Option<PublishAck>>,
    /// What a retry of each in-flight publish needs, by slot.
    slots: Vec<Option<InFlight<O>>>,
    /// Slots free for reuse.
    free: Vec<usize>,
    /// The earliest failed publish and its error.
    first_error: Option<(usize, Error)>,
}

/// One in-flight publish of a batch, kept for a retry with the same message id.
struct InFlight<O> {
    index: usize,
    message: O,
    deadline: Instant,
}

/// Records the outcome of publish `i`, keeping the error of the earliest failed one.
fn record(
    (i, result): (usize, Result<PublishAck, Error>),
    acks: &mut [Option<PublishAck>],
    first_error: &mut Option<(usize, Error)>,
) {
    match result {
        Ok(a) => acks[i] = Some(a),
        Err(e) => {
            if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                *first_error = Some((i, e));
            }
        }
    }
}
