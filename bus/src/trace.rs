//! W3C trace context on events: the `traceparent` header.
//!
//! With [`EventBusConfig::trace_context`](crate::EventBusConfig::trace_context) on, every
//! published event carries a `traceparent`. An event published while a handler runs continues
//! the trace of the event being handled (same trace id, a new parent id), so a chain of events
//! across services reads as one trace; an event published elsewhere starts a new trace. Receivers
//! that do not know the header ignore it.

use std::future::Future;

use crate::util::random_u64;

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// A parsed `traceparent`: version 00, trace id, parent (span) id, flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else (or all-zero ids) is `None`.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || span.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        u8::from_str_radix(version, 16).ok()?;
        let p = TraceParent {
            trace_id: u128::from_str_radix(trace, 16).ok()?,
            span_id: u64::from_str_radix(span, 16).ok()?,
            flags: u8::from_str_radix(flags, 16).ok()?,
        };
        (p.trace_id != 0 && p.span_id != 0).then_some(p)
    }

    /// A new trace, sampled.
    fn root() -> Self {
        TraceParent {
            trace_id: (u128::from(random()) << 64) | u128::from(random()),
            span_id: random(),
            flags: 1,
        }
    }

    /// The same trace with a new parent id.
    fn child(&self) -> Self {
        TraceParent {
            span_id: random(),
            ..*self
        }
    }

    /// The header value.
    pub(crate) fn to_header(self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// A non-zero random 64-bit id.
fn random() -> u64 {
    random_u64().max(1)
}

/// The `traceparent` for an event published now: a child of the event being handled by this
/// task, or a new trace.
pub(crate) fn outgoing() -> String {
    CURRENT
        .try_with(TraceParent::child)
        .unwrap_or_else(|_| TraceParent::root())
        .to_header()
}

/// Runs `fut` (a handler) inside the trace of `parent`, if any.
pub(crate) async fn within<F: Future>(parent: Option<TraceParent>, fut: F) -> F::Output {
    match parent {
        Some(parent) => CURRENT.scope(parent, fut).await,
        None => fut.await,
    }
}

/// Runs `f` (one poll of a handler) inside the trace of `parent`, if any.
pub(crate) fn sync_within<R>(parent: Option<TraceParent>, f: impl FnOnce() -> R) -> R {
    match parent {
        Some(parent) => CURRENT.sync_scope(parent, f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format() {
        let s = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(s).unwrap();
        assert_eq!(p.to_header(), s);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn children_keep_the_trace() {
        let root = TraceParent::parse(&outgoing()).unwrap();
        let child = within(TraceParent::parse(&root.to_header()), async { outgoing() }).await;
        let child = TraceParent::parse(&child).unwrap();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        let other = TraceParent::parse(&outgoing()).unwrap();
        assert_ne!(other.trace_id, root.trace_id);
    }
}
