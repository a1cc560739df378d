//! Errors: [`Error`] for the bus API, [`HandlerError`] for what a handler returns.

use std::fmt;
use std::time::Duration;

/// A boxed error that can cross tasks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a bus operation. Every message says what to do about it, and
/// [`Error::is_retryable`] says whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A topic or filter breaks the NATS subject rules.
    #[error("invalid topic `{topic}`: {reason}")]
    InvalidTopic {
        /// The rejected topic or filter.
        topic: String,
        /// Which rule it breaks and how to fix it.
        reason: &'static str,
    },
    /// A subscription group (or the consumer name it derives from) breaks the naming rule.
    #[error("invalid group `{group}`: {reason}")]
    InvalidGroup {
        /// The rejected group, escaped.
        group: String,
        /// Which rule it breaks and how to fix it.
        reason: &'static str,
    },
    /// A header name or value cannot travel in a NATS message.
    #[error("invalid header `{name}`: {reason}")]
    InvalidHeader {
        /// The header's name (escaped if it is the part at fault).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The bus was closed; it takes no more publishes or subscriptions.
    #[error("the event bus is closed: closing is final, build a new bus to go on")]
    Closed,
    /// No stream captures the topic, so a publish there would be lost.
    #[error(
        "no stream captures topic `{topic}`: add it to the stream's subjects \
         (`stream.subjects` in the configuration) or publish on a captured topic"
    )]
    NoStream {
        /// The topic that nothing captures.
        topic: String,
    },
    /// The message (payload and headers) is over the limit: the server's `max_payload` less
    /// the [room kept for dead-letter headers](crate::headers::dead_letter_headroom), so that
    /// the event's dead letter always fits.
    #[error(
        "message of {size} bytes (payload and headers) on `{topic}` is over the limit of {max} \
         bytes, which is the server's `max_payload` less the room kept for dead-letter headers \
         (4 KiB): make the event smaller or raise the server's `max_payload`"
    )]
    PayloadTooLarge {
        /// The topic published on.
        topic: String,
        /// Size of the encoded event and its headers.
        size: usize,
        /// The largest size allowed.
        max: usize,
    },
    /// A batch publish stored some of its events and not others: exactly which is in `acks`.
    #[error(
        "batch publish stopped at event {failed} ({} of the {} events it reached are stored): {source}",
        .acks.iter().flatten().count(),
        .acks.len()
    )]
    PartialBatch {
        /// One entry per event the batch reached, in input order: the acknowledgement of a
        /// stored event, `None` for one that is not stored. Events past the end were not sent.
        /// Publishing the unstored ones again is safe when they have ids (the server drops
        /// repeats).
        acks: Vec<Option<crate::PublishAck>>,
        /// The index of the first event that failed.
        failed: usize,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
    /// An operation did not finish in time; trying again may help.
    #[error("timed out after {after:?} {what}; trying again may help")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long it waited.
        after: Duration,
    },
    /// The client is not connected right now; it reconnects in the background.
    #[error("not connected to NATS: the client reconnects in the background, try again shortly")]
    NotConnected,
    /// The first connection to the servers failed.
    #[error("could not connect to NATS at {servers}: {source}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// Why it failed (unreachable, authorization violation, TLS, ...).
        #[source]
        source: BoxError,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A stream exists with settings that differ from the configuration. Nothing was changed.
    #[error(
        "stream `{stream}` exists with `{setting}` ({variable}) = {existing}, but the \
         configuration says {configured}: change the configuration to match, or migrate the \
         stream deliberately (the bus never resets an existing stream)"
    )]
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// The setting that differs, as its path in the configuration (`stream.retention`).
        setting: &'static str,
        /// The environment variable of that setting (`BUS_STREAM_RETENTION`).
        variable: &'static str,
        /// The stream's current value.
        existing: String,
        /// The configured value.
        configured: String,
    },
    /// The event could not be encoded or decoded.
    #[error("could not {action} `{type_name}`: {source}")]
    Codec {
        /// `encode` or `decode`.
        action: &'static str,
        /// The protobuf type involved.
        type_name: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Another backend failure.
    #[error("{context}: {source}")]
    Backend {
        /// What the bus was doing.
        context: String,
        /// Whether trying again can help.
        retryable: bool,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether trying the same operation again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::NotConnected => true,
            Error::Backend { retryable, .. } => *retryable,
            Error::PartialBatch { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// Why a handler failed, which decides what happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Transient: the message is redelivered with backoff until `max_deliver`, then dead-lettered.
    Retryable,
    /// The handler ran out of time; retryable.
    Timeout,
    /// Will never succeed: dead-lettered at once.
    Permanent,
    /// The payload could not be decoded as the handler's event type: dead-lettered at once.
    Decode,
    /// The handler panicked: dead-lettered at once.
    Panic,
    /// The server stopped delivering the event after `max_deliver` deliveries that ended with
    /// no outcome (a consumer stopped during the last one, or no acknowledgement came within
    /// `ack_wait`): dead-lettered from the server's max-deliveries advisory.
    MaxDeliveries,
}

impl ErrorClass {
    /// Whether a message failing with this class is redelivered.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Retryable | ErrorClass::Timeout)
    }

    /// The class as it appears in dead-letter headers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Decode => "decode",
            ErrorClass::Panic => "panic",
            ErrorClass::MaxDeliveries => "max_deliveries",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a handler returns: retryable or permanent, keeping its source.
///
/// Any `std::error::Error` converts into a *retryable* `HandlerError` with `?`; mark errors that
/// can never succeed as permanent with [`HandlerError::permanent`] or [`ResultExt::permanent`]:
///
/// ```
/// use bus::{HandlerError, ResultExt};
///
/// fn parse(qty: &str) -> Result<u32, HandlerError> {
///     // A malformed quantity will be malformed on every delivery: dead-letter it at once.
///     let n: u32 = qty.parse().permanent()?;
///     Ok(n)
/// }
/// assert!(!parse("x").unwrap_err().is_retryable());
/// ```
pub struct HandlerError {
    class: ErrorClass,
    source: BoxError,
}

impl HandlerError {
    /// A transient failure: redeliver with backoff.
    pub fn retryable(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorClass::Retryable, source)
    }

    /// A failure that will never succeed: dead-letter at once.
    pub fn permanent(source: impl Into<BoxError>) -> Self {
        Self::new(ErrorClass::Permanent, source)
    }

    /// An error of the given class.
    pub fn new(class: ErrorClass, source: impl Into<BoxError>) -> Self {
        HandlerError {
            class,
            source: source.into(),
        }
    }

    /// The class, which decides redelivery or dead-lettering.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// Whether the message will be redelivered.
    pub fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The underlying error, owned.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("class", &self.class)
            .field("source", &self.source)
            .finish()
    }
}

impl HandlerError {
    /// The error's message with its causes (`a: b: c`), without the class.
    pub fn message(&self) -> String {
        let mut out = self.source.to_string();
        let mut cause = self.source.source();
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.class, self.message())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError::retryable(e)
    }
}

/// Marks the error of a `Result` as retryable or permanent.
pub trait ResultExt<T> {
    /// A failure here can never succeed: dead-letter the message at once.
    fn permanent(self) -> Result<T, HandlerError>;
    /// A failure here is transient: redeliver the message with backoff.
    fn retryable(self) -> Result<T, HandlerError>;
}

impl<T, E: Into<BoxError>> ResultExt<T> for Result<T, E> {
    fn permanent(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::permanent)
    }
    fn retryable(self) -> Result<T, HandlerError> {
        self.map_err(HandlerError::retryable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_mark_is_retryable_and_display_has_chain() {
        fn f() -> Result<(), HandlerError> {
            let _: u8 = "300".parse::<u8>()?;
            Ok(())
        }
        let e = f().unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(
            e.to_string()
                .starts_with("retryable error: number too large"),
            "{e}"
        );
    }

    #[test]
    fn classes() {
        assert!(ErrorClass::Timeout.is_retryable());
        for c in [ErrorClass::Permanent, ErrorClass::Decode, ErrorClass::Panic] {
            assert!(!c.is_retryable());
        }
        assert!(!HandlerError::permanent("nope").is_retryable());
        assert!(Error::NotConnected.is_retryable());
        assert!(!Error::Closed.is_retryable());
    }
}
