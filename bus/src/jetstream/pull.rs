//! The pull loop of a durable consumer: the JetStream [`Source`] of the delivery worker.
//!
//! It sends its own pull requests (`$JS.API.CONSUMER.MSG.NEXT`) on one inbox, asking for exactly
//! as many messages as the worker wants (see [`crate::delivery::flow`]) rather than a fixed
//! batch, so no message waits unseen in a client buffer while its `ack_wait` runs out. Requests
//! expire every 30 s and are renewed; idle heartbeats (every 5 s) show they are alive, and
//! silence for two heartbeats means they were lost (a server restart, a reconnect), so they are
//! sent again. A deleted consumer is created again.
//!
//! Acknowledgements go straight to the message's reply subject through the shared client.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull;
use async_nats::{Client, StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::json;
use tokio::time::Instant;

use super::Inner;
use super::consumers::ensure_consumer;
use super::publish::headers_from;
use crate::delivery::{DeadLetter, Source};
use crate::{Delivery, Error};

/// Lifetime of one pull request.
const EXPIRES: Duration = Duration::from_secs(30);
/// Idle heartbeat the server sends for a pending pull request.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How often pending requests are checked against a reconnect, which loses them.
const RECONNECT_CHECK: Duration = Duration::from_millis(250);

/// A message pulled from the consumer.
pub(crate) struct Pulled {
    msg: async_nats::Message,
    client: Arc<Client>,
    delivered: u32,
    stream_sequence: u64,
    published: SystemTime,
}

impl Pulled {
    /// Sends `kind` to the message's reply subject.
    async fn reply(&self, kind: AckKind) {
        let Some(reply) = self.msg.reply.clone() else {
            return;
        };
        if let Err(e) = self.client.publish(reply, Bytes::from(kind)).await {
            tracing::warn!(
                subject = %self.msg.subject, sequence = self.stream_sequence, error = %e,
                "could not settle a message; the server delivers it again after ack_wait"
            );
        }
    }
}

/// The pull requests in flight on one inbox.
struct Requests {
    inbox: Subscriber,
    reply_to: Subject,
    /// Messages asked for and not yet received (nor given up by the server).
    asked: usize,
    /// When the server was last heard from on the inbox.
    heard: Instant,
    /// The client's connection count when the pending requests were sent.
    connects: u64,
}

/// What arrived on the inbox.
enum Incoming {
    Message(async_nats::Message),
    /// A heartbeat, or a request ending without all its messages: nothing to hand over.
    Nothing,
    /// The consumer is gone or cannot be reached: open it again.
    Gone(String),
}

/// Pulls from one durable consumer for one subscription.
pub(crate) struct PullSource {
    bus: Arc<Inner>,
    client: Arc<Client>,
    stream: String,
    /// The consumer's configuration, to create it again if it is deleted.
    config: pull::Config,
    /// `$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}`.
    next_subject: Subject,
    group: Arc<str>,
    /// The filter, when it has no wildcard: every message's topic, shared instead of copied.
    fixed_topic: Option<Arc<str>>,
    requests: Option<Requests>,
    /// Failed attempts to open the consumer in a row.
    failures: u32,
}

impl PullSource {
    /// Starts pulling from the consumer `config` names on `stream` (which exists).
    pub(crate) async fn open(
        bus: Arc<Inner>,
        stream: String,
        config: pull::Config,
        group: Arc<str>,
        filter: &str,
    ) -> Result<Self, Error> {
        let durable = config.durable_name.clone().unwrap_or_default();
        let mut source = PullSource {
            client: Arc::new(bus.client.clone()),
            next_subject: Subject::from(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}")),
            bus,
            stream,
            config,
            group,
            fixed_topic: (!filter.contains(['*', '>'])).then(|| Arc::from(filter)),
            requests: None,
            failures: 0,
        };
        source.requests = Some(source.subscribe_inbox().await?);
        Ok(source)
    }

    async fn subscribe_inbox(&self) -> Result<Requests, Error> {
        let reply_to = Subject::from(self.client.new_inbox());
        let inbox = self
            .client
            .subscribe(reply_to.clone())
            .await
            .map_err(|e| Error::Backend {
                context: format!("subscribing to pull replies from stream `{}`", self.stream),
                retryable: true,
                source: Box::new(e),
            })?;
        Ok(Requests {
            inbox,
            reply_to,
            asked: 0,
            heard: Instant::now(),
            connects: self.connects(),
        })
    }

    /// Creates the consumer again if needed and a fresh inbox, after a delay growing with the
    /// failures in a row.
    async fn reopen(&mut self) {
        self.failures += 1;
        tokio::time::sleep(reopen_delay(self.failures)).await;
        let patience = self.bus.config.publish_timeout;
        let opened = async {
            ensure_consumer(&self.bus.js, &self.stream, self.config.clone(), patience).await?;
            self.subscribe_inbox().await
        };
        match opened.await {
            Ok(requests) => {
                self.requests = Some(requests);
                self.failures = 0;
                tracing::info!(group = %self.group, stream = %self.stream, "pulling again");
            }
            Err(e) => tracing::warn!(
                group = %self.group, error = %e, failures = self.failures,
                "cannot pull from the durable consumer; retrying"
            ),
        }
    }

    /// How many times the client has connected so far.
    fn connects(&self) -> u64 {
        self.client.statistics().connects.load(Ordering::Relaxed)
    }

    /// Asks for more messages when fewer than half of `want` are on their way.
    async fn ask(&mut self, want: usize) {
        let connects = self.connects();
        let Some(r) = self.requests.as_mut() else {
            return;
        };
        if r.asked > 0 && r.connects != connects {
            tracing::debug!(group = %self.group, "reconnected; asking for messages again");
            r.asked = 0;
        }
        let missing = want.saturating_sub(r.asked);
        if missing == 0 || missing < want.div_ceil(2) {
            return;
        }
        let body = json!({
            "batch": missing,
            "expires": nanos(EXPIRES),
            "idle_heartbeat": nanos(HEARTBEAT),
        });
        let sent = self
            .client
            .publish_with_reply(
                self.next_subject.clone(),
                r.reply_to.clone(),
                Bytes::from(body.to_string()),
            )
            .await;
        match sent {
            Ok(()) => {
                if r.asked == 0 {
                    // Silence is measured from the first request after a quiet spell.
                    r.heard = Instant::now();
                }
                r.asked += missing;
                r.connects = connects;
            }
            Err(e) => tracing::debug!(group = %self.group, error = %e, "pull request not sent"),
        }
    }
}

impl Requests {
    /// Sorts out what arrived on the inbox, keeping the count of messages asked for.
    fn incoming(&mut self, msg: async_nats::Message) -> Incoming {
        self.heard = Instant::now();
        let status = msg.status.unwrap_or(StatusCode::OK);
        if status == StatusCode::OK {
            self.asked = self.asked.saturating_sub(1);
            return Incoming::Message(msg);
        }
        let description = msg.description.clone().unwrap_or_default();
        match status {
            StatusCode::IDLE_HEARTBEAT => Incoming::Nothing,
            StatusCode::NO_RESPONDERS => {
                Incoming::Gone("no responders: the consumer or its stream is unavailable".into())
            }
            _ if description.eq_ignore_ascii_case("Consumer Deleted")
                || description.eq_ignore_ascii_case("Consumer is push based") =>
            {
                Incoming::Gone(description)
            }
            // A request ended (expired, or refused) with messages left: those will not come.
            _ => {
                let left = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse::<usize>().ok());
                match left {
                    Some(n) => self.asked = self.asked.saturating_sub(n),
                    None => {
                        tracing::debug!(%status, description, "pull request ended");
                        self.asked = 0;
                    }
                }
                Incoming::Nothing
            }
        }
    }
}

impl Source for PullSource {
    type Message = Pulled;
    const REDELIVERS_UNSETTLED: bool = true;

    async fn recv(&mut self, want: usize, into: &mut Vec<Pulled>) -> bool {
        loop {
            if self.requests.is_none() {
                self.reopen().await;
                continue;
            }
            self.ask(want).await;
            let (client, group) = (&self.client, &self.group);
            let r = self.requests.as_mut().expect("checked above");
            // Pending requests are lost when the server goes quiet for two heartbeats, or when
            // the client reconnects (checked by `ask` on the next round).
            let silent_after = r.heard + HEARTBEAT * 2;
            let wake = silent_after.min(Instant::now() + RECONNECT_CHECK);
            let arrived = tokio::select! {
                msg = r.inbox.next() => msg,
                _ = tokio::time::sleep_until(wake), if r.asked > 0 => {
                    if Instant::now() >= silent_after {
                        tracing::debug!(%group, "no heartbeat from pending pull requests; asking again");
                        r.asked = 0;
                    }
                    continue;
                }
            };
            let Some(first) = arrived else {
                tracing::warn!(%group, "pull inbox closed; opening it again");
                self.requests = None;
                continue;
            };
            // Take what is already buffered as well, without another trip round the worker.
            let (mut next, mut got, mut gone) = (Some(first), false, None);
            while let Some(msg) = next.take() {
                match r.incoming(msg) {
                    Incoming::Message(m) => {
                        if let Some(p) = pulled(client, m) {
                            into.push(p);
                            got = true;
                        }
                    }
                    Incoming::Nothing => {}
                    Incoming::Gone(why) => {
                        gone = Some(why);
                        break;
                    }
                }
                next = r.inbox.next().now_or_never().flatten();
            }
            if let Some(why) = gone {
                tracing::warn!(%group, why, "consumer gone; creating it again");
                self.requests = None;
            }
            if got {
                return true;
            }
        }
    }

    fn payload<'m>(&self, p: &'m Pulled) -> &'m Bytes {
        &p.msg.payload
    }

    fn delivery(&self, p: &Pulled) -> Delivery {
        let headers = p.msg.headers.as_ref().map(headers_from).unwrap_or_default();
        let topic = match &self.fixed_topic {
            Some(t) if **t == *p.msg.subject.as_str() => Arc::clone(t),
            _ => Arc::from(p.msg.subject.as_str()),
        };
        Delivery::new(
            topic,
            Arc::clone(&self.group),
            headers,
            p.delivered,
            p.stream_sequence,
            p.published,
        )
    }

    fn max_payload(&self) -> usize {
        self.bus.max_payload()
    }

    async fn keep_alive(p: &Pulled) {
        p.reply(AckKind::Progress).await;
    }

    fn ack(&mut self, p: Pulled) -> Option<impl Future<Output = ()> + Send + use<>> {
        Some(async move { p.reply(AckKind::Ack).await })
    }

    fn redeliver(
        &mut self,
        p: Pulled,
        delay: Duration,
    ) -> Option<impl Future<Output = ()> + Send + use<>> {
        Some(async move { p.reply(AckKind::Nak(Some(delay))).await })
    }

    fn dead_letter(
        &mut self,
        p: Pulled,
        letter: DeadLetter,
    ) -> Option<impl Future<Output = ()> + Send + use<>> {
        let bus = Arc::clone(&self.bus);
        let every = (bus.config.ack_wait / 3).max(Duration::from_millis(50));
        Some(async move {
            // The original stays in progress while its dead letter is stored, and is terminated
            // only once it is.
            let stored = {
                let store = bus.store_dead_letter(&letter);
                let mut store = std::pin::pin!(store);
                let mut tick = tokio::time::interval_at(Instant::now() + every, every);
                loop {
                    tokio::select! {
                        stored = &mut store => break stored,
                        _ = tick.tick() => p.reply(AckKind::Progress).await,
                    }
                }
            };
            if stored {
                p.reply(AckKind::Term).await;
            }
        })
    }

    async fn give_back(&mut self, unstarted: Vec<Pulled>) {
        let n = unstarted.len();
        for p in unstarted {
            p.reply(AckKind::Nak(None)).await;
        }
        if n > 0 {
            tracing::debug!(group = %self.group, returned = n, "unstarted messages returned to the server");
        }
        // No more requests: the server drops the pending ones when the inbox goes.
        self.requests = None;
    }
}

/// A message from the inbox as a [`Pulled`], if its reply subject is a JetStream ack subject.
fn pulled(client: &Arc<Client>, msg: async_nats::Message) -> Option<Pulled> {
    let Some(info) = msg.reply.as_deref().and_then(AckSubject::parse) else {
        tracing::warn!(
            subject = %msg.subject, reply = ?msg.reply,
            "message without JetStream metadata ignored"
        );
        return None;
    };
    Some(Pulled {
        msg,
        client: Arc::clone(client),
        delivered: u32::try_from(info.delivered).unwrap_or(u32::MAX),
        stream_sequence: info.stream_sequence,
        published: info.published,
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn reopen_delay(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.min(5));
    Duration::from_millis(ms).min(Duration::from_secs(3))
}

/// What the reply subject of a JetStream message says about it (ADR-15):
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or
/// the longer form with a domain and an account hash after `$JS.ACK.` (and possibly more
/// tokens at the end).
#[derive(Debug, PartialEq, Eq)]
struct AckSubject {
    delivered: u64,
    stream_sequence: u64,
    published: SystemTime,
}

impl AckSubject {
    fn parse(reply: &str) -> Option<AckSubject> {
        let rest = reply.strip_prefix("$JS.ACK.")?.as_bytes();
        // Where each token starts, in one pass (the tokens are short: no memchr per token).
        let mut starts = [0usize; 12];
        let mut n = 1;
        for (i, b) in rest.iter().enumerate() {
            if *b == b'.' {
                if let Some(slot) = starts.get_mut(n) {
                    *slot = i + 1;
                }
                n += 1;
            }
        }
        // `first` is the index of `<delivered>`.
        let first = match n {
            7 => 2,
            n if n >= 9 => 4,
            _ => return None,
        };
        let number = |t: usize| -> Option<u64> {
            let start = *starts.get(t)?;
            let digits = rest[start..].split(|b| *b == b'.').next()?;
            if digits.is_empty() {
                return None;
            }
            digits.iter().try_fold(0u64, |acc, d| {
                let digit = d.checked_sub(b'0').filter(|d| *d <= 9)?;
                acc.checked_mul(10)?.checked_add(u64::from(digit))
            })
        };
        let nanos = number(first + 3)?;
        Some(AckSubject {
            delivered: number(first)?,
            stream_sequence: number(first + 1)?,
            published: SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_of_both_forms() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let want = AckSubject {
            delivered: 3,
            stream_sequence: 42,
            published: t,
        };
        assert_eq!(
            AckSubject::parse("$JS.ACK.EVENTS.grp_1.3.42.40.1700000000123456789.7"),
            Some(AckSubject { ..want })
        );
        assert_eq!(
            AckSubject::parse("$JS.ACK.hub.ACCHASH.EVENTS.grp_1.3.42.40.1700000000123456789.7.x"),
            Some(AckSubject {
                delivered: 3,
                stream_sequence: 42,
                published: t,
            })
        );
        assert_eq!(AckSubject::parse("$JS.ACK.EVENTS.grp.3.42"), None);
        assert_eq!(AckSubject::parse("_INBOX.abc"), None);
        assert_eq!(AckSubject::parse("$JS.ACK.EVENTS.grp.x.42.40.1.7"), None);
    }
}
