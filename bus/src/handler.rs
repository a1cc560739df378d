//! Handlers: how an `async fn` or closure taking an event becomes something the bus can call
//! with a [`RawMessage`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::Bytes;
use tokio_util::sync::ReusableBoxFuture;

use crate::{Delivery, ErrorClass, Event, HandlerError, RawMessage};

/// The future a handler or middleware returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// Where a delivery worker puts the handler future it is about to poll: one allocation, reused
/// by every delivery whose handler finishes at its first poll.
#[doc(hidden)]
pub type HandlerSlot = ReusableBoxFuture<'static, Result<(), HandlerError>>;

/// The innermost, type-erased handler: takes a [`RawMessage`], decodes it and runs user code.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery.
    fn call(&self, msg: RawMessage) -> HandlerFuture;

    /// Puts the future handling a delivery in `slot`, decoding from the borrowed `payload`
    /// (which the caller keeps for a redelivery or a dead letter). Not for implementors: the
    /// provided version calls [`call`](Handler::call).
    #[doc(hidden)]
    fn start(&self, payload: &Bytes, delivery: Delivery, slot: &mut HandlerSlot) {
        slot.set(self.call(RawMessage {
            payload: payload.clone(),
            delivery,
        }));
    }
}

/// What a handler's first argument can be: an [`Event`] (decoded from the payload) or the
/// [`RawMessage`] itself.
pub trait FromMessage: Sized + Send + 'static {
    /// The full protobuf name of the type, if it is an event.
    const FULL_NAME: Option<&'static str>;
    /// Builds the argument from the message. Failing is a [`ErrorClass::Decode`] error.
    fn from_message(msg: &RawMessage) -> Result<Self, HandlerError>;

    /// Builds the argument from a message's parts, the payload borrowed. The provided version
    /// builds a [`RawMessage`] and calls [`from_message`](FromMessage::from_message).
    fn from_parts(payload: &Bytes, delivery: &Delivery) -> Result<Self, HandlerError> {
        Self::from_message(&RawMessage {
            payload: payload.clone(),
            delivery: delivery.clone(),
        })
    }

    /// The id the decoded value carries in its payload, if any: what
    /// [`Delivery::event_id`] gives for a message without a `Nats-Msg-Id` header. The provided
    /// version has none; events give [`Event::event_id`].
    fn payload_event_id(&self) -> Option<&str> {
        None
    }
}

impl<E: Event> FromMessage for E {
    const FULL_NAME: Option<&'static str> = Some(E::FULL_NAME);
    fn from_message(msg: &RawMessage) -> Result<Self, HandlerError> {
        Self::from_parts(&msg.payload, &msg.delivery)
    }

    fn payload_event_id(&self) -> Option<&str> {
        Event::event_id(self)
    }

    fn from_parts(payload: &Bytes, delivery: &Delivery) -> Result<Self, HandlerError> {
        E::decode(&payload[..]).map_err(|e| {
            HandlerError::new(
                ErrorClass::Decode,
                format!(
                    "payload on `{}` is not a valid `{}`: {e}",
                    delivery.topic(),
                    E::FULL_NAME
                ),
            )
        })
    }
}

impl FromMessage for RawMessage {
    const FULL_NAME: Option<&'static str> = None;
    fn from_message(msg: &RawMessage) -> Result<Self, HandlerError> {
        Ok(msg.clone())
    }
}

/// An `async fn` (or closure) that handles `T`, taking `T` alone or `T` plus its [`Delivery`].
/// `Args` only tells the two shapes apart; you never name it.
pub trait HandlerFn<T, Args>: Send + Sync + 'static {
    /// Runs the handler.
    fn call(&self, value: T, delivery: Delivery) -> HandlerFuture;

    /// Runs the handler with its future in `slot` (reusing its allocation). The provided
    /// version boxes [`call`](HandlerFn::call)'s future.
    #[doc(hidden)]
    fn call_in(&self, value: T, delivery: Delivery, slot: &mut HandlerSlot) {
        slot.set(self.call(value, delivery));
    }
}

impl<T, F, Fut, Er> HandlerFn<T, (T,)> for F
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Er>> + Send + 'static,
    Er: Into<HandlerError>,
{
    fn call(&self, value: T, _: Delivery) -> HandlerFuture {
        let fut = self(value);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }

    fn call_in(&self, value: T, _: Delivery, slot: &mut HandlerSlot) {
        let fut = self(value);
        slot.set(async move { fut.await.map_err(Into::into) });
    }
}

impl<T, F, Fut, Er> HandlerFn<T, (T, Delivery)> for F
where
    F: Fn(T, Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Er>> + Send + 'static,
    Er: Into<HandlerError>,
{
    fn call(&self, value: T, delivery: Delivery) -> HandlerFuture {
        let fut = self(value, delivery);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }

    fn call_in(&self, value: T, delivery: Delivery, slot: &mut HandlerSlot) {
        let fut = self(value, delivery);
        slot.set(async move { fut.await.map_err(Into::into) });
    }
}

/// A [`HandlerFn`] of `T` as a [`Handler`]: decodes `T` from the message, then calls it.
pub(crate) struct Typed<T, F, Args> {
    f: F,
    _t: PhantomData<fn(T, Args)>,
}

impl<T, F, Args> Typed<T, F, Args> {
    pub(crate) fn new(f: F) -> Self {
        Typed { f, _t: PhantomData }
    }
}

impl<T: FromMessage, F: HandlerFn<T, Args>, Args: 'static> Handler for Typed<T, F, Args> {
    fn call(&self, msg: RawMessage) -> HandlerFuture {
        match T::from_message(&msg) {
            Ok(value) => {
                let delivery = msg.delivery.with_payload_event_id(value.payload_event_id());
                self.f.call(value, delivery)
            }
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }

    fn start(&self, payload: &Bytes, delivery: Delivery, slot: &mut HandlerSlot) {
        match T::from_parts(payload, &delivery) {
            Ok(value) => {
                let delivery = delivery.with_payload_event_id(value.payload_event_id());
                self.f.call_in(value, delivery, slot);
            }
            Err(e) => slot.set(std::future::ready(Err(e))),
        }
    }
}

/// The future of a batch handler: one outcome per event, in order.
pub type BatchFuture =
    Pin<Box<dyn Future<Output = Vec<Result<(), HandlerError>>> + Send + 'static>>;

/// What a batch handler returns: one outcome for the whole batch (`Result<(), E>`), or one per
/// event (`Vec<Result<(), E>>`, in the order of the events given).
///
/// A per-event list of the wrong length is a bug in the handler: every event of the batch then
/// fails permanently with an error that says so.
pub trait BatchOutcome: Send + 'static {
    /// The outcome of each of `n` events.
    fn into_outcomes(self, n: usize) -> Vec<Result<(), HandlerError>>;
}

impl<Er: Into<HandlerError> + Send + 'static> BatchOutcome for Result<(), Er> {
    fn into_outcomes(self, n: usize) -> Vec<Result<(), HandlerError>> {
        match self {
            Ok(()) => (0..n).map(|_| Ok(())).collect(),
            Err(e) => {
                let e: HandlerError = e.into();
                let (class, message) = (e.class(), e.message());
                (0..n)
                    .map(|_| Err(HandlerError::new(class, message.clone())))
                    .collect()
            }
        }
    }
}

impl<Er: Into<HandlerError> + Send + 'static> BatchOutcome for Vec<Result<(), Er>> {
    fn into_outcomes(self, n: usize) -> Vec<Result<(), HandlerError>> {
        if self.len() != n {
            let message = format!(
                "the batch handler returned {} outcomes for {n} events; return one per event, \
                 in order, or a single `Result` for the whole batch",
                self.len()
            );
            return (0..n)
                .map(|_| Err(HandlerError::permanent(message.clone())))
                .collect();
        }
        self.into_iter().map(|r| r.map_err(Into::into)).collect()
    }
}

/// An `async fn` (or closure) handling a batch of events `Vec<E>`.
pub trait BatchFn<E>: Send + Sync + 'static {
    /// Runs the handler on `events`; the outcome has one entry per event.
    fn call(&self, events: Vec<E>) -> BatchFuture;
}

impl<E, F, Fut> BatchFn<E> for F
where
    E: Send + 'static,
    F: Fn(Vec<E>) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: BatchOutcome,
{
    fn call(&self, events: Vec<E>) -> BatchFuture {
        let n = events.len();
        let fut = self(events);
        Box::pin(async move { fut.await.into_outcomes(n) })
    }
}

/// The type-erased batch handler the delivery worker runs: decodes each message, calls the
/// handler with the ones that decoded, and gives one outcome per message (a decode failure for
/// the ones that did not).
pub(crate) trait BatchHandler: Send + Sync + 'static {
    /// Handles the messages; the outcome has one entry per message, in order.
    fn call(&self, msgs: &[RawMessage]) -> BatchFuture;
}

/// A [`BatchFn`] of `E` as a [`BatchHandler`].
pub(crate) struct TypedBatch<E, F> {
    f: F,
    _e: PhantomData<fn(E)>,
}

impl<E, F> TypedBatch<E, F> {
    pub(crate) fn new(f: F) -> Self {
        TypedBatch { f, _e: PhantomData }
    }
}

impl<E: FromMessage, F: BatchFn<E>> BatchHandler for TypedBatch<E, F> {
    fn call(&self, msgs: &[RawMessage]) -> BatchFuture {
        let mut outcomes: Vec<Option<Result<(), HandlerError>>> = Vec::with_capacity(msgs.len());
        let mut events = Vec::with_capacity(msgs.len());
        for msg in msgs {
            match E::from_message(msg) {
                Ok(e) => {
                    events.push(e);
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        if events.is_empty() {
            return Box::pin(std::future::ready(outcomes.into_iter().flatten().collect()));
        }
        let handled = self.f.call(events);
        Box::pin(async move {
            let mut handled = handled.await.into_iter();
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| handled.next().unwrap_or(Ok(()))))
                .collect()
        })
    }
}
