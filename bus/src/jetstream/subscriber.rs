//! Durable pull consumers: one task per `subscribe` call, pulling from the (filter, group)
//! consumer and running handlers with bounded concurrency.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy};
use async_nats::jetstream::{AckKind, Context, Message};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use serde_json::json;

use super::Inner;
use super::streams::{api, api_error};
use crate::consumer::{self, Resolved, Verdict};
use crate::middleware::Pipeline;
use crate::{Delivery, Error, HandlerError, Headers, RawMessage};

/// Largest pull batch; larger batches were not faster.
const MAX_BATCH: usize = 1000;
/// Idle heartbeat of a pull request; a missed one is logged and the pull goes on.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Lifetime of one pull request.
const EXPIRES: Duration = Duration::from_secs(30);

/// The server-side consumer configuration of a subscription.
pub(crate) fn consumer_config(
    durable: &str,
    group: &str,
    filter: &str,
    s: &Resolved,
) -> pull::Config {
    pull::Config {
        durable_name: Some(durable.to_owned()),
        description: Some(format!("bus group `{group}` on `{filter}`")),
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        ack_wait: s.ack_wait,
        max_deliver: i64::from(s.max_deliver),
        filter_subject: filter.to_owned(),
        replay_policy: ReplayPolicy::Instant,
        max_ack_pending: i64::try_from(s.max_ack_pending).unwrap_or(i64::MAX),
        backoff: server_backoff(s),
        ..Default::default()
    }
}

/// The server's redelivery delays after an ack timeout (a consumer that died mid-message).
///
/// The server uses `backoff[n-1]` instead of `ack_wait` as the ack deadline of delivery `n`, so
/// each entry is raised to at least `ack_wait` (a handler is never cut short), and the list is
/// cut to `max_deliver - 1` entries (the server requires `max_deliver > backoff.len()`). When
/// nothing is left above `ack_wait` the list is empty and `ack_wait` applies. Handler failures
/// do not use this list: they are NAKed with the bus's own backoff delay.
pub(crate) fn server_backoff(s: &Resolved) -> Vec<Duration> {
    let n = (s.max_deliver as usize).saturating_sub(1);
    let list: Vec<Duration> = s
        .backoff
        .iter()
        .take(n)
        .map(|d| (*d).max(s.ack_wait))
        .collect();
    if list.iter().all(|d| *d == s.ack_wait) {
        Vec::new()
    } else {
        list
    }
}

/// Creates the durable consumer, or binds to the existing one.
///
/// An existing consumer with other delivery settings is updated to this subscription's settings
/// (the code being deployed is the source of truth; servers before 2.10 do this silently, so the
/// bus does it openly and logs what changed). Its start position (`deliver_policy`) is kept,
/// since the server cannot change it.
pub(crate) async fn ensure_consumer(
    js: &Context,
    stream: &str,
    mut config: pull::Config,
    patience: Duration,
) -> Result<PullConsumer, Error> {
    let durable = config.durable_name.clone().unwrap_or_default();
    let info = api(
        js,
        &format!("CONSUMER.INFO.{stream}.{durable}"),
        &json!({}),
        patience,
    )
    .await?;
    if api_error(&info).is_none()
        && let Some(existing) = info
            .get("config")
            .cloned()
            .and_then(|c| serde_json::from_value::<pull::Config>(c).ok())
    {
        let changes = differences(&existing, &config);
        if !changes.is_empty() {
            tracing::warn!(
                stream, consumer = %durable, changes = %changes.join(", "),
                "durable consumer exists with other settings; updating it to this subscription's"
            );
        }
        config.deliver_policy = existing.deliver_policy;
    }
    js.create_consumer_on_stream(config, stream)
        .await
        .map_err(|e| Error::Backend {
            context: format!(
                "creating durable consumer `{durable}` on stream `{stream}` failed; check the \
                 subscription's settings (max_deliver must exceed the backoff steps)"
            ),
            retryable: matches!(
                e.kind(),
                async_nats::jetstream::stream::ConsumerErrorKind::TimedOut
            ),
            source: Box::new(e),
        })
}

fn differences(old: &pull::Config, new: &pull::Config) -> Vec<String> {
    let mut d = Vec::new();
    if old.ack_wait != new.ack_wait {
        d.push(format!("ack_wait {:?} -> {:?}", old.ack_wait, new.ack_wait));
    }
    if old.max_deliver != new.max_deliver {
        d.push(format!(
            "max_deliver {} -> {}",
            old.max_deliver, new.max_deliver
        ));
    }
    if old.max_ack_pending != new.max_ack_pending {
        d.push(format!(
            "max_ack_pending {} -> {}",
            old.max_ack_pending, new.max_ack_pending
        ));
    }
    if old.backoff != new.backoff {
        d.push(format!("backoff {:?} -> {:?}", old.backoff, new.backoff));
    }
    if old.ack_policy != new.ack_policy {
        d.push(format!(
            "ack_policy {:?} -> {:?}",
            old.ack_policy, new.ack_policy
        ));
    }
    d
}

/// One `subscribe` call: pulls from the durable consumer and runs the handler.
pub(crate) struct Member {
    pub(crate) bus: Arc<Inner>,
    pub(crate) stream: String,
    pub(crate) consumer: PullConsumer,
    pub(crate) config: pull::Config,
    pub(crate) group: Arc<str>,
    /// The filter, when it has no wildcard: every message's topic, shared instead of copied.
    pub(crate) fixed_topic: Option<Arc<str>>,
    pub(crate) pipeline: Pipeline,
    pub(crate) settings: Resolved,
}

type Messages = Pin<Box<pull::Stream>>;
type Opening = BoxFuture<'static, Result<(PullConsumer, Messages), Error>>;

impl Member {
    fn batch(&self) -> usize {
        // At least 2: with a batch of 1, async-nats re-pulls only when its pending count drops to
        // 0, and when a message overtakes the pull request's own confirmation the count ends at 1
        // for a request already served; the consumer then stalls until the pull expires (seen
        // in ordered mode). The server still holds back to `max_ack_pending` unacked messages.
        self.settings.max_ack_pending.clamp(2, MAX_BATCH)
    }

    fn open(&self, consumer: Option<PullConsumer>) -> Opening {
        let js = self.bus.js.clone();
        let stream = self.stream.clone();
        let config = self.config.clone();
        let batch = self.batch();
        let patience = self.bus.config.publish_timeout;
        async move {
            let consumer = match consumer {
                Some(c) => c,
                None => ensure_consumer(&js, &stream, config, patience).await?,
            };
            let messages = consumer
                .stream()
                .max_messages_per_batch(batch)
                .heartbeat(HEARTBEAT)
                .expires(EXPIRES)
                .messages()
                .await
                .map_err(|e| Error::Backend {
                    context: format!("pulling from consumer on stream `{stream}`"),
                    retryable: true,
                    source: Box::new(e),
                })?;
            Ok((consumer, Box::pin(messages)))
        }
        .boxed()
    }

    pub(crate) async fn run(self) {
        let shutdown = self.bus.shutdown.clone();
        let concurrency = self.settings.concurrency;
        let mut running = FuturesUnordered::new();
        let mut messages: Option<Messages> = None;
        let mut opening: Option<Opening> = Some(self.open(Some(self.consumer.clone())));
        let mut retry = Box::pin(tokio::time::sleep(Duration::ZERO));
        let mut failures = 0u32;
        // Made once: a fresh `cancelled()` per iteration would lock the token each time.
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        loop {
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                Some(()) = running.next(), if !running.is_empty() => {}
                opened = async { opening.as_mut().expect("guarded").await }, if opening.is_some() => {
                    opening = None;
                    match opened {
                        Ok((_, m)) => {
                            failures = 0;
                            messages = Some(m);
                        }
                        Err(e) => {
                            failures += 1;
                            let delay = reopen_delay(failures);
                            tracing::warn!(
                                group = %self.group, error = %e, ?delay,
                                "cannot pull from the durable consumer; retrying"
                            );
                            retry.as_mut().reset(tokio::time::Instant::now() + delay);
                        }
                    }
                }
                _ = &mut retry, if messages.is_none() && opening.is_none() => {
                    opening = Some(self.open(None));
                }
                item = async { messages.as_mut().expect("guarded").next().await },
                    if messages.is_some() && running.len() < concurrency =>
                {
                    match item {
                        Some(Ok(msg)) => {
                            let fut = Box::pin(self.process(msg));
                            start(&mut running, fut).await;
                            // Take what is already buffered without another trip round the loop.
                            while running.len() < concurrency {
                                let Some(m) = messages.as_mut() else { break };
                                match m.next().now_or_never() {
                                    Some(Some(Ok(msg))) => {
                                        let fut = Box::pin(self.process(msg));
                                        start(&mut running, fut).await;
                                    }
                                    Some(Some(Err(e))) => {
                                        tracing::debug!(group = %self.group, error = %e, "pull error");
                                        break;
                                    }
                                    _ => break,
                                }
                            }
                        }
                        Some(Err(e)) => match e.kind() {
                            MessagesErrorKind::MissingHeartbeat => {
                                tracing::debug!(group = %self.group, "pull heartbeat missed; waiting for the server");
                            }
                            MessagesErrorKind::ConsumerDeleted | MessagesErrorKind::NoResponders => {
                                tracing::warn!(group = %self.group, error = %e, "consumer gone; recreating it");
                                messages = None;
                                failures += 1;
                                retry.as_mut().reset(tokio::time::Instant::now() + reopen_delay(failures));
                            }
                            _ => tracing::warn!(group = %self.group, error = %e, "pull error"),
                        },
                        None => {
                            tracing::warn!(group = %self.group, "pull stream ended; reopening it");
                            messages = None;
                            failures += 1;
                            retry.as_mut().reset(tokio::time::Instant::now() + reopen_delay(failures));
                        }
                    }
                }
            }
        }
        // Closing: take no more. Messages already pulled but not started go back at once.
        if let Some(m) = messages.as_mut() {
            let mut returned = 0usize;
            while let Some(Some(Ok(msg))) = m.next().now_or_never() {
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                returned += 1;
            }
            if returned > 0 {
                tracing::debug!(group = %self.group, returned, "unstarted messages returned to the server");
            }
        }
        drop(messages);
        drop(opening);
        let in_flight = running.len();
        let drain = async { while running.next().await.is_some() {} };
        if tokio::time::timeout(self.bus.config.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                group = %self.group, in_flight, timeout = ?self.bus.config.drain_timeout,
                "handlers still running at the drain timeout were cancelled; the server redelivers their messages"
            );
        }
    }

    fn progress_every(&self) -> Duration {
        (self.settings.ack_wait / 3).max(Duration::from_millis(50))
    }

    /// Runs one delivery to its end: handler, then ack, NAK with delay, or dead letter + TERM.
    async fn process(&self, msg: Message) {
        let (attempt, sequence, published) = match msg.info() {
            Ok(i) => (
                u32::try_from(i.delivered).unwrap_or(u32::MAX),
                i.stream_sequence,
                SystemTime::from(i.published),
            ),
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "message without JetStream metadata ignored");
                return;
            }
        };
        let mut headers = Headers::with_capacity(msg.headers.as_ref().map_or(0, |h| h.len()));
        if let Some(map) = &msg.headers {
            for (name, values) in map.iter() {
                let name: &str = name.as_ref();
                for v in values {
                    let v: &str = v.as_ref();
                    headers.append(name.to_owned(), v.to_owned());
                }
            }
        }
        let raw = RawMessage {
            payload: msg.payload.clone(),
            delivery: Delivery::new(
                match &self.fixed_topic {
                    Some(t) if **t == *msg.subject.as_str() => Arc::clone(t),
                    _ => Arc::from(msg.subject.as_str()),
                },
                Arc::clone(&self.group),
                headers,
                attempt,
                sequence,
                published,
            ),
        };
        let delivery = raw.delivery.clone();
        let every = self.progress_every();
        let verdict = with_progress(
            &msg,
            every,
            consumer::run(&self.pipeline, raw, &self.settings),
        )
        .await;
        let settled = match verdict {
            Verdict::Ack => msg.ack().await,
            Verdict::Redeliver(delay, e) => {
                tracing::debug!(topic = delivery.topic(), attempt, error = %e, ?delay, "redelivering");
                msg.ack_with(AckKind::Nak(Some(delay))).await
            }
            Verdict::DeadLetter(e) => {
                let stored = with_progress(
                    &msg,
                    every,
                    self.dead_letter(&delivery, msg.payload.clone(), &e),
                )
                .await;
                if !stored {
                    return;
                }
                msg.ack_with(AckKind::Term).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(
                topic = delivery.topic(), sequence, error = %e,
                "could not settle a message; the server redelivers it after ack_wait"
            );
        }
    }

    /// Publishes the dead letter and waits for the stream's ack, retrying transient failures
    /// (the message id `dlq:{group}:{sequence}` makes retries safe). Returns whether it is stored.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        payload: bytes::Bytes,
        error: &HandlerError,
    ) -> bool {
        let subject = self.bus.config.dead_letter.subject_for(delivery.topic());
        let headers = consumer::dead_letter_headers(delivery, error);
        tracing::warn!(
            topic = delivery.topic(), group = delivery.group(), attempt = delivery.attempt(),
            class = error.class().as_str(), error = %error, dead_letter = %subject,
            "message dead-lettered"
        );
        let mut failures = 0u32;
        loop {
            match self
                .bus
                .publish_unchecked(&subject, payload.clone(), &headers)
                .await
            {
                Ok(_) => return true,
                Err(e) if e.is_retryable() => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "dead letter not stored yet; retrying");
                    tokio::time::sleep(reopen_delay(failures)).await;
                }
                Err(e) => {
                    tracing::error!(
                        topic = delivery.topic(), sequence = delivery.stream_sequence(), error = %e,
                        "dead letter cannot be stored; the message is left unacknowledged in its stream"
                    );
                    return false;
                }
            }
        }
    }
}

/// Polls a delivery once; only one that is still running joins the set. Most deliveries (a
/// quick handler, then an ack queued on the connection) finish here, without a task of their own.
async fn start<F: Future<Output = ()>>(
    running: &mut FuturesUnordered<Pin<Box<F>>>,
    mut fut: Pin<Box<F>>,
) {
    if futures::poll!(fut.as_mut()).is_pending() {
        running.push(fut);
    }
}

fn reopen_delay(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.min(5));
    Duration::from_millis(ms).min(Duration::from_secs(3))
}

/// Runs `fut`, telling the server every `every` that the message is still being worked on.
async fn with_progress<F: Future>(msg: &Message, every: Duration, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    // Most handlers finish on their first poll: no timer for them.
    if let std::task::Poll::Ready(out) = futures::poll!(fut.as_mut()) {
        return out;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "in-progress ack not sent");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventBusConfig, SubscribeOptions};

    #[test]
    fn server_backoff_respects_ack_wait_and_max_deliver() {
        let mut c = EventBusConfig {
            ack_wait: Duration::from_secs(10),
            max_deliver: 3,
            ..Default::default()
        };
        c.consumer.backoff = vec![
            Duration::from_secs(1),
            Duration::from_secs(30),
            Duration::from_secs(60),
        ];
        let r = Resolved::new(&SubscribeOptions::default(), &c);
        assert_eq!(
            server_backoff(&r),
            [Duration::from_secs(10), Duration::from_secs(30)]
        );
        c.consumer.backoff = vec![Duration::from_millis(50)];
        let r = Resolved::new(&SubscribeOptions::default(), &c);
        assert!(server_backoff(&r).is_empty());
        c.max_deliver = 1;
        c.consumer.backoff = vec![Duration::from_secs(60)];
        let r = Resolved::new(&SubscribeOptions::default(), &c);
        assert!(server_backoff(&r).is_empty());
    }
}
