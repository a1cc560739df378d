//! The NATS JetStream backend: durable, at-least-once, dead-lettering.
//!
//! Built by [`EventBus::connect`](crate::EventBus::connect) when the configuration says
//! `backend = "jetstream"`, or directly with [`JetStreamBus::connect`].
//!
//! # What it does
//!
//! - **Connection**: every server of `servers` is given to the client, which fails over among
//!   them and reconnects forever (delays growing to 4 s); connection events are logged. Auth by
//!   user/password, token, nkey seed or credentials file; TLS with a CA and an optional client
//!   certificate. Wrong credentials or no reachable server fail [`JetStreamBus::connect`] with
//!   [`Error::Connect`] saying which.
//! - **Streams**: the events stream (`stream_name`, `stream.*`, retention `stream.retention`)
//!   and the dead-letter stream (`dead_letter.*`, subjects `{prefix}.>`, Limits retention) are
//!   created if missing. An existing stream gets its missing subjects added; any other
//!   difference (retention, storage, replicas, max age, and for the events stream the duplicate
//!   window) is [`Error::StreamMismatch`] naming the setting and its variable: an existing
//!   stream is never reset. The update keeps every field of the server's config, including ones
//!   this client does not know. `stream.management` = `verify` creates and changes nothing,
//!   `none` sends no stream request at all. A stream that cannot be created because another
//!   stream captures its subjects is an error naming that stream and the setting to point at it.
//! - **Publish** waits for the stream's acknowledgement. `Nats-Msg-Id` is the event id (or a
//!   generated one); a transient failure (timeout, disconnection, stream leader election) is
//!   retried with the same id until `publish_timeout`, so the server stores the event once.
//!   Errors: [`Error::NoStream`] (no stream captures the subject), [`Error::PayloadTooLarge`]
//!   (checked against the server's `max_payload` before sending), [`Error::Timeout`],
//!   [`Error::NotConnected`]. The batch publish keeps up to 1 000 acknowledgements in flight.
//! - **Subscribe**: one durable pull consumer per (filter, group), named by
//!   [`durable_name`]; explicit ack, `ack_wait`, `max_deliver`, `max_ack_pending` and a
//!   server-side backoff (see below). A new consumer starts where `consumer.start` (or the
//!   subscription's `start`) says: by default with events published after it is created
//!   (`DeliverPolicy::New`, as the memory backend), or at the beginning, the last event, a
//!   sequence or a time; a durable consumer then keeps its place across restarts.
//!   `Subscription::durable` binds to an existing durable consumer by name instead. Subscriptions with the same group, in one process or many, share
//!   the consumer and so the events.
//! - **Pulling**: the subscription asks the server for as many messages as its handlers can
//!   start within half of `ack_wait` (estimated from how long they take), so the rest of
//!   a backlog stays with the server for whichever member of the group has room.
//! - **Delivery**: up to `concurrency` handlers at once per subscription (ordered mode: one,
//!   with `max_ack_pending = 1`, so the server keeps stream order). While a handler runs, and
//!   while a pulled message waits for a handler slot, an in-progress ack is sent every
//!   `ack_wait / 3`, so the message keeps its delivery count. `Ok` is
//!   acked; a retryable error with deliveries left is NAKed with the backoff delay; the last
//!   failed attempt (known from the delivery count the server sends with the message, not from
//!   advisories), a permanent error, an undecodable payload or a panic is published to the
//!   dead-letter stream, its ack awaited, and only then the original is terminated (TERM).
//! - **Close** stops pulling (messages pulled but not started are NAKed back), waits up to
//!   `drain_timeout` for running handlers and their acks, flushes, and drains the connection.
//! - **Health**: [`EventBus::check`](crate::EventBus::check) is unhealthy when closed,
//!   disconnected, or when a JetStream round trip fails.
//!
//! # Settings the server sees
//!
//! `backoff`: the server uses `backoff[n-1]` in place of `ack_wait` for delivery `n` and needs
//! `max_deliver > backoff.len()`. Handler failures are NAKed with the bus's own delay, so the
//! server's list only matters when a consumer dies mid-message; it is sent with each entry
//! raised to at least `ack_wait` and cut to `max_deliver - 1` entries.
//!
//! An existing durable consumer with other settings (a new release changed `max_deliver`, ...)
//! is updated to the subscription's settings, with a warning listing the changes; servers
//! before 2.10 would do this silently. Its start position is kept.
//!
//! # Server versions
//!
//! Works with nats-server 2.9 and later. Nothing here needs 2.10+: one filter subject per
//! consumer (`filter_subject`, never `filter_subjects`, which 2.9 ignores), no per-message TTL,
//! no consumer pause; async-nats is built without its `server_2_1x` features, so no 2.10+
//! field is sent. Stream updates go through raw JSON and keep 2.10+ fields intact.
//!
//! Limits: a consumer killed during the *last* allowed delivery of a message leaves it in the
//! stream without a dead letter (the server stops redelivering at `max_deliver`).

mod advisories;
mod api;
mod connect;
mod consumers;
mod gauges;
mod publish;
mod pull;
mod streams;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

pub use self::consumers::durable_name;
pub use self::gauges::CONSUMER_SAMPLE_INTERVAL;
use self::publish::InFlightPublishes;
use self::pull::PullSource;
use crate::capture::Capture;
use crate::delivery::{DeliverySettings, Worker};
use crate::tasks::Tasks;
use crate::telemetry::DeliveryMetrics;
use crate::{Error, EventBusConfig, Headers, PublishAck, Subscription};

/// Connects to the configured servers as [`JetStreamBus::connect`] does (every server, auth,
/// TLS, reconnecting forever, errors naming the setting to fix), but creates and checks no
/// stream: for tools that look at what is there, such as the `bus` command line.
///
/// ```no_run
/// # async fn f() -> Result<(), bus::Error> {
/// let config = bus::EventBusConfig::from_env()?;
/// let client = bus::jetstream::connect_client(&config).await?;
/// let js = async_nats::jetstream::new(client);
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// An invalid configuration, or [`Error::Connect`] when no server is reachable or the
/// credentials or TLS settings are refused.
pub async fn connect_client(config: &EventBusConfig) -> Result<async_nats::Client, Error> {
    config.validate()?;
    connect::connect(config).await
}

/// The JetStream event bus. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct JetStreamBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: EventBusConfig,
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    /// For publishes: the same connection, with the attempt timeout for acks.
    publisher: async_nats::jetstream::Context,
    /// Which stream captures which subjects, as the server has them.
    capture: Capture,
    /// Set when `close()` begins: no new subscriptions, workers stop.
    closing: AtomicBool,
    /// Set once running handlers are done: no new publishes.
    closed: AtomicBool,
    /// Publishes under way, which `close()` lets finish.
    publishing: InFlightPublishes,
    /// Set once `close()` drained the connection.
    connection_drained: AtomicBool,
    tasks: Tasks,
}

impl std::fmt::Debug for JetStreamBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBus")
            .field("servers", &self.inner.config.servers)
            .field("streams", &self.inner.capture)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl JetStreamBus {
    /// Connects to the configured servers and makes sure both streams exist as configured.
    pub async fn connect(config: EventBusConfig) -> Result<Self, Error> {
        config.validate()?;
        Self::connect_validated(config).await
    }

    /// [`connect`](Self::connect) for a configuration that was validated already.
    pub(crate) async fn connect_validated(config: EventBusConfig) -> Result<Self, Error> {
        let client = connect::connect(&config).await?;
        let timeout = config.publish_timeout.max(Duration::from_secs(5));
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        let publisher = async_nats::jetstream::ContextBuilder::new()
            .timeout(Inner::attempt_timeout(&config))
            .build(client.clone());
        let (events, dead_letters) = streams::ensure_streams(&js, &config).await?;
        let capture = Capture::new([
            (config.stream_name.clone(), events),
            (config.dead_letter.stream_name.clone(), dead_letters),
        ]);
        tracing::info!(servers = ?config.servers, streams = ?capture, "JetStream bus connected");
        Ok(JetStreamBus {
            inner: Arc::new(Inner {
                config,
                client,
                js,
                publisher,
                capture,
                closing: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                publishing: InFlightPublishes::default(),
                connection_drained: AtomicBool::new(false),
                tasks: Tasks::default(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EventBusConfig {
        &self.inner.config
    }

    /// The underlying NATS client, for what the bus does not cover.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The JetStream context the bus uses.
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.inner.js
    }

    pub(crate) async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        headers: Headers,
    ) -> Result<PublishAck, Error> {
        let message = publish::Prepared {
            payload: &payload,
            headers: &headers,
        };
        self.inner.publish(topic, &message).await
    }

    /// Publishes a typed event, encoded straight into its NATS message.
    pub(crate) async fn publish_event<E: crate::Event>(
        &self,
        topic: &str,
        event: &E,
        trace: Option<&crate::trace::Producer>,
    ) -> Result<PublishAck, Error> {
        let message = publish::EventOut::new(event, trace)?;
        self.inner.publish(topic, &message).await
    }

    /// Publishes typed events, keeping up to 1 000 acknowledgements in flight.
    pub(crate) async fn publish_events<'a, E: crate::Event>(
        &self,
        topic: &str,
        events: impl Iterator<Item = &'a E>,
        trace: Option<&crate::trace::Producer>,
    ) -> Result<Vec<PublishAck>, Error> {
        let messages = events.map(|e| publish::EventOut::new(e, trace));
        self.inner.publish_batch(topic, messages).await
    }

    pub(crate) async fn subscribe(&self, sub: Subscription) -> Result<(), Error> {
        let inner = &self.inner;
        let checked = sub.check(
            &inner.config,
            &inner.capture,
            inner.closing.load(Ordering::Acquire),
        )?;
        let durable = match &sub.options.durable {
            Some(name) => name.clone(),
            None => bus_names::durable_name(&checked.group, &sub.filter),
        };
        let mut settings = DeliverySettings::new(&sub.options, &inner.config);
        // A work queue hands out what it stores, so its consumers start at the first stored
        // event (the server refuses any other start).
        if inner.config.stream.retention == crate::config::Retention::WorkQueue
            && checked.stream == inner.config.stream_name
            && settings.start == crate::config::StartPosition::New
        {
            settings.start = crate::config::StartPosition::All;
        }
        let config = consumers::consumer_config(&durable, &checked.group, &sub.filter, &settings);
        consumers::ensure_consumer(
            &inner.js,
            &checked.stream,
            config.clone(),
            inner.config.publish_timeout,
        )
        .await?;
        let group: std::sync::Arc<str> = checked.group.into();
        let checked_stream = checked.stream.clone();
        let group_for_watch = Arc::clone(&group);
        let source = PullSource::open(
            Arc::clone(inner),
            checked.stream,
            config,
            Arc::clone(&group),
            &sub.filter,
        )
        .await?;
        tracing::debug!(
            name = %sub.name, filter = %sub.filter, group = %group, consumer = %durable,
            concurrency = settings.concurrency, "JetStream subscription started"
        );
        let metrics = DeliveryMetrics::new(&sub.filter, &group);
        inner.tasks.spawn(
            format!("the consumer gauges of handler `{}`", sub.name),
            gauges::sample_consumer(
                Arc::clone(inner),
                checked_stream.clone(),
                durable.clone(),
                Arc::clone(&group),
                inner.tasks.shutdown(),
            ),
        );
        let worker = Worker {
            source,
            handling: sub.handling,
            key: sub.key,
            settings,
            dead_letters: inner.config.dead_letter.clone(),
            name: sub.name.as_str().into(),
            group,
            shutdown: inner.tasks.shutdown(),
            drain_timeout: inner.config.drain_timeout,
            observer: None,
            metrics,
        };
        inner.tasks.spawn(
            format!("the delivery worker of handler `{}`", sub.name),
            worker.run(),
        );
        inner.tasks.spawn(
            format!("the max-deliveries watch of handler `{}`", sub.name),
            advisories::watch_max_deliveries(
                Arc::clone(inner),
                checked_stream,
                durable,
                sub.filter.to_string(),
                group_for_watch,
                inner.tasks.shutdown(),
            ),
        );
        Ok(())
    }

    pub(crate) async fn close(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.closing.swap(true, Ordering::AcqRel) {
            inner.tasks.wait().await;
            inner.publishing.idle().await;
            return Ok(());
        }
        // Workers stop taking messages and let their handlers finish; what the handlers
        // publish meanwhile still goes out.
        inner.tasks.stop().await;
        inner.closed.store(true, Ordering::SeqCst);
        let drain = inner.config.drain_timeout;
        if tokio::time::timeout(drain, inner.publishing.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout = ?drain,
                "publishes still waiting for their acknowledgement at the drain timeout; they \
                 fail with `Closed` (a batch reports which of its events were stored)"
            );
        }
        let wait = Duration::from_secs(5);
        if tokio::time::timeout(wait, inner.client.flush())
            .await
            .is_err()
        {
            tracing::warn!("flushing the NATS connection timed out at close");
        }
        let drained = tokio::time::timeout(wait, inner.client.drain()).await;
        inner.connection_drained.store(true, Ordering::Release);
        match drained {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "draining the NATS connection");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("draining the NATS connection timed out at close");
                Ok(())
            }
        }
    }

    pub(crate) async fn check(&self) -> crate::Health {
        use crate::Health;
        let inner = &self.inner;
        if inner.closing.load(Ordering::Acquire) {
            return Health::Unhealthy("the bus is closed".into());
        }
        if let Some(failure) = inner.tasks.failure() {
            return Health::Unhealthy(failure);
        }
        let state = inner.client.connection_state();
        if state != async_nats::connection::State::Connected {
            return Health::Unhealthy(format!(
                "not connected to NATS ({state}); the client reconnects in the background"
            ));
        }
        let round_trip = tokio::time::timeout(
            Duration::from_secs(2),
            inner
                .js
                .request::<_, _, serde_json::Value>("INFO".to_owned(), &serde_json::json!({})),
        )
        .await;
        match round_trip {
            Ok(Ok(reply)) => match api::ApiError::of(&reply) {
                None => Health::Healthy,
                Some(e) => Health::Unhealthy(format!(
                    "JetStream answered with error {}: {}",
                    e.status, e.description
                )),
            },
            Ok(Err(e)) => Health::Unhealthy(format!("JetStream round trip failed: {e}")),
            Err(_) => Health::Unhealthy("JetStream did not answer within 2s".into()),
        }
    }
}
