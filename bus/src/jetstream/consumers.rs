//! Durable consumers: their server-side configuration, their names, and creating or binding to
//! them without surprises.

use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy};
use async_nats::jetstream::{Context, ErrorCode};
use serde_json::json;

use super::api::{self, ApiError};
use crate::Error;
use crate::config::StartPosition;
use crate::delivery::DeliverySettings;

/// The durable consumer name of subscription group `group` on `filter`.
///
/// NATS consumer names may not contain `.`, `*`, `>`, whitespace or path separators, and a
/// group is ASCII letters, digits, `-` and `_` (see
/// [`validate_group`](crate::topic::validate_group)). The name is the group (at most its first
/// 64 bytes), then `_` and 16 hex digits of a stable hash (FNV-1a, 64 bits) of the exact group
/// and filter. So the name is the same in every process and release, and the same group on two
/// filters gets two consumers, as the delivery contract asks (a subscription is a (filter,
/// group) pair).
///
/// An invalid group is an [`Error::InvalidGroup`] that says how to fix it.
///
/// ```
/// let name = bus::jetstream::durable_name("billing-on_order", "cqc.events.v1.order_placed").unwrap();
/// assert!(name.starts_with("billing-on_order_"));
/// assert!(!name.contains(['.', '*', '>', ' ']));
/// assert_ne!(name, bus::jetstream::durable_name("billing-on_order", "cqc.events.v1.>").unwrap());
/// assert!(bus::jetstream::durable_name("billing.on_order", "cqc.events.v1.>").is_err());
/// ```
pub fn durable_name(group: &str, filter: &str) -> Result<String, Error> {
    crate::topic::validate_group(group)?;
    Ok(bus_names::durable_name(group, filter))
}

/// The `deliver_policy` of a start position.
fn deliver_policy(start: StartPosition) -> DeliverPolicy {
    match start {
        StartPosition::All => DeliverPolicy::All,
        StartPosition::New => DeliverPolicy::New,
        StartPosition::Last => DeliverPolicy::Last,
        StartPosition::Sequence(start_sequence) => {
            DeliverPolicy::ByStartSequence { start_sequence }
        }
        StartPosition::Time(t) => DeliverPolicy::ByStartTime {
            start_time: t.into(),
        },
    }
}

/// The server-side consumer configuration of a subscription.
pub(crate) fn consumer_config(
    durable: &str,
    group: &str,
    filter: &str,
    s: &DeliverySettings,
) -> pull::Config {
    pull::Config {
        durable_name: Some(durable.to_owned()),
        description: Some(format!("bus group `{group}` on `{filter}`")),
        deliver_policy: deliver_policy(s.start),
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
pub(crate) fn server_backoff(s: &DeliverySettings) -> Vec<Duration> {
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
    let info = api::request(
        js,
        &format!("CONSUMER.INFO.{stream}.{durable}"),
        &json!({}),
        patience,
    )
    .await?;
    if ApiError::of(&info).is_none()
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
        .map_err(|e| {
            use async_nats::jetstream::stream::ConsumerErrorKind;
            let advice = match e.kind() {
                ConsumerErrorKind::JetStream(js_error) => work_queue_advice(js_error.error_code()),
                _ => None,
            };
            Error::Backend {
                context: format!(
                    "creating durable consumer `{durable}` on stream `{stream}` failed{}",
                    advice.unwrap_or(" (the server's reason follows)")
                ),
                retryable: matches!(e.kind(), ConsumerErrorKind::TimedOut),
                source: Box::new(e),
            }
        })
}

/// What to do when a `workqueue` stream refuses a consumer: it gives each message to one
/// consumer only, so groups cannot share its subjects.
fn work_queue_advice(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::CONSUMER_WQ_CONSUMER_NOT_UNIQUE | ErrorCode::CONSUMER_WQ_MULTIPLE_UNFILTERED => {
            Some(
                ": the stream has `workqueue` retention, where each event goes to one consumer \
                 only, and another group already consumes subjects this filter overlaps. Several \
                 groups on overlapping filters need `limits` or `interest` retention \
                 (`stream.retention`, BUS_STREAM_RETENTION); on a work queue, share one group",
            )
        }
        ErrorCode::CONSUMER_WQ_CONSUMER_NOT_DELIVER_ALL => Some(
            ": the stream has `workqueue` retention, whose consumers must start at the first \
             stored event",
        ),
        _ => None,
    }
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
        let r = DeliverySettings::new(&SubscribeOptions::default(), &c);
        assert_eq!(
            server_backoff(&r),
            [Duration::from_secs(10), Duration::from_secs(30)]
        );
        c.consumer.backoff = vec![Duration::from_millis(50)];
        let r = DeliverySettings::new(&SubscribeOptions::default(), &c);
        assert!(server_backoff(&r).is_empty());
        c.max_deliver = 1;
        c.consumer.backoff = vec![Duration::from_secs(60)];
        let r = DeliverySettings::new(&SubscribeOptions::default(), &c);
        assert!(server_backoff(&r).is_empty());
    }
}
