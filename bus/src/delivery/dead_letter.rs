//! Dead letters: the original bytes, unchanged, with headers saying where they came from and why
//! they failed. Built here for every backend; a backend only stores them.

use bytes::Bytes;

use crate::config::DeadLetterSettings;
use crate::headers::{check_name, check_value, dead_letter_headroom, header_line_len};
use crate::{Delivery, HandlerError, Headers, headers};

/// Longest error message kept in [`headers::DLQ_ERROR`], in characters.
const ERROR_MAX_CHARS: usize = 1024;

/// A dead letter ready to be published.
#[derive(Debug)]
pub(crate) struct DeadLetter {
    /// `{prefix}.{topic}`.
    pub(crate) subject: String,
    /// The original payload.
    pub(crate) payload: Bytes,
    /// The original headers plus the `Bus-Dlq-*` ones.
    pub(crate) headers: Headers,
}

impl DeadLetter {
    /// The dead letter of a delivery that failed with `error`, for a server whose
    /// `max_payload` is `max_payload`; logs it.
    pub(crate) fn new(
        settings: &DeadLetterSettings,
        delivery: &Delivery,
        payload: Bytes,
        error: &HandlerError,
        max_payload: usize,
    ) -> Self {
        let subject = settings.subject_for(delivery.topic());
        tracing::warn!(
            topic = delivery.topic(), group = delivery.group(), attempt = delivery.attempt(),
            sequence = delivery.stream_sequence(), class = error.class().as_str(), error = %error,
            dead_letter = %subject, "message dead-lettered"
        );
        DeadLetter {
            subject,
            payload,
            headers: dead_letter_headers(delivery, error, dead_letter_headroom(max_payload)),
        }
    }
}

/// Headers of the dead letter of a delivery: the original headers (its message id kept as
/// `Bus-Dlq-Msg-Id`), plus where it came from and why it failed, adding at most `headroom`
/// bytes to the original's.
pub(crate) fn dead_letter_headers(
    delivery: &Delivery,
    error: &HandlerError,
    headroom: usize,
) -> Headers {
    let mut h = Headers::with_capacity(delivery.headers().len() + 8);
    for (name, value) in delivery.headers().iter() {
        // Another client may have sent a header this one cannot send back; the dead letter
        // keeps the rest (and the payload, unchanged).
        if check_name(name).and(check_value(name, value)).is_err() {
            tracing::debug!(header = name, "header not copied to the dead letter");
            continue;
        }
        if name.eq_ignore_ascii_case(headers::MSG_ID) {
            h.append(headers::DLQ_MSG_ID, value.to_owned());
        } else {
            h.append(name.to_owned(), value.to_owned());
        }
    }
    // One dead letter per (group, message): a retried dead-letter publish is deduplicated,
    // while two groups that both give up keep a dead letter each.
    h.insert(
        headers::MSG_ID,
        format!("dlq:{}:{}", delivery.group(), delivery.stream_sequence()),
    );
    h.insert(headers::DLQ_TOPIC, delivery.topic().to_owned());
    h.insert(
        headers::DLQ_STREAM_SEQ,
        delivery.stream_sequence().to_string(),
    );
    h.insert(headers::DLQ_DELIVERIES, delivery.attempt().to_string());
    h.insert(headers::DLQ_GROUP, delivery.group().to_owned());
    h.insert(headers::DLQ_ERROR_CLASS, error.class().as_str());
    // The dead letter must fit the headroom every publish leaves under `max_payload`: the error
    // message gets what the other headers leave of it.
    let added = h.wire_len().saturating_sub(delivery.headers().wire_len());
    let room = headroom.saturating_sub(added + header_line_len(headers::DLQ_ERROR, ""));
    h.insert(headers::DLQ_ERROR, one_line(&error.message(), room));
    h
}

/// `text` on one line (control characters become spaces), cut to at most
/// [`ERROR_MAX_CHARS`] characters and `max_bytes` bytes.
fn one_line(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars().take(ERROR_MAX_CHARS) {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max_bytes {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_headers_are_sendable_even_when_the_original_ones_are_not() {
        // As a client that does not check its headers could have sent them.
        let original: Headers = [
            ("Nats-Msg-Id", "evt-1"),
            ("tenant", "t-7"),
            ("bad name", "x"),
            ("multi", "line\nvalue"),
        ]
        .into_iter()
        .collect();
        let delivery = Delivery::new(
            "cqc.events.v1.ping",
            "g",
            original,
            3,
            42,
            std::time::SystemTime::now(),
        );
        let h = dead_letter_headers(&delivery, &HandlerError::permanent("no\r\nway"), 4096);
        h.validate().expect("every dead-letter header can be sent");
        assert_eq!(h.get("tenant"), Some("t-7"));
        assert_eq!(h.get(headers::DLQ_MSG_ID), Some("evt-1"));
        assert_eq!(h.get(headers::MSG_ID), Some("dlq:g:42"));
        assert_eq!(h.get(headers::DLQ_ERROR), Some("no  way"));
        assert_eq!((h.get("bad name"), h.get("multi")), (None, None));
    }

    #[test]
    fn dead_letter_headers_fit_the_headroom_whatever_the_error() {
        let topic = bus_names::cases::LONG_OK;
        let group = "g".repeat(bus_names::GROUP_MAX);
        let original: Headers = [("Nats-Msg-Id", "evt-1".to_owned())].into_iter().collect();
        let delivery = Delivery::new(
            topic,
            group.as_str(),
            original.clone(),
            u32::MAX,
            u64::MAX,
            std::time::SystemTime::now(),
        );
        for message in ["é".repeat(5000), "x".repeat(5000), "a\nb".into()] {
            let h = dead_letter_headers(&delivery, &HandlerError::permanent(message), 4096);
            h.validate().unwrap();
            let added = h.wire_len() - original.wire_len();
            assert!(added <= 4096, "{added} bytes added");
        }
        let h = dead_letter_headers(&delivery, &HandlerError::permanent("x".repeat(5000)), 4096);
        assert_eq!(h.get(headers::DLQ_ERROR).unwrap().len(), ERROR_MAX_CHARS);
    }
}
