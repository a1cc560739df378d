//! What every publish sends besides the payload (the message id and the event type), and the
//! size rule every publish follows.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::headers::dead_letter_headroom;
use crate::{Error, Event, Headers, headers};

/// Encodes an event with its standard headers: message id and type name. The event id becomes
/// the message id, so it must be a valid one (see [`Headers::validate`]).
pub(crate) fn encode_event<E: Event>(event: &E) -> Result<(Bytes, Headers), Error> {
    let mut h = Headers::new();
    match event.event_id() {
        Some(id) if !id.is_empty() => {
            crate::headers::check_message_id(id)?;
            h.push_copy(headers::MSG_ID, id);
        }
        _ => h.push_copy(headers::MSG_ID, &new_message_id()),
    }
    h.push_static(headers::EVENT_TYPE, E::FULL_NAME);
    Ok((Bytes::from(event.encode_to_vec()), h))
}

/// Checks the size of a message (payload and headers) against the limit: the server's
/// `max_payload` less the [dead-letter headroom](crate::headers::dead_letter_headroom), so the
/// event's dead letter (the same bytes and headers plus the `Bus-Dlq-*` ones) always fits.
pub(crate) fn check_size(
    topic: &str,
    payload: &[u8],
    headers: &Headers,
    max_payload: usize,
) -> Result<(), Error> {
    check_message_size(topic, payload.len() + headers.wire_len(), max_payload)
}

/// [`check_size`] of a message of `size` bytes, payload and headers.
pub(crate) fn check_message_size(
    topic: &str,
    size: usize,
    max_payload: usize,
) -> Result<(), Error> {
    let max = max_payload - dead_letter_headroom(max_payload);
    if size > max {
        return Err(Error::PayloadTooLarge {
            topic: topic.to_owned(),
            size,
            max,
        });
    }
    Ok(())
}

/// A message id unique to this process run: 32 hex digits, a random per-process prefix and a
/// counter.
pub(crate) fn new_message_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(crate::util::random_u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let a = new_message_id();
        let b = new_message_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }
}
