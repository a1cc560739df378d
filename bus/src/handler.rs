//! Handlers: how an `async fn` or closure taking an event becomes something the bus can call
//! with a [`RawMessage`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use crate::{Delivery, ErrorClass, Event, HandlerError, RawMessage};

/// The future a handler or middleware returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// The innermost, type-erased handler: takes a [`RawMessage`], decodes it and runs user code.
pub trait Handler: Send + Sync + 'static {
    /// Handles one delivery.
    fn call(&self, msg: RawMessage) -> HandlerFuture;
}

/// What a handler's first argument can be: an [`Event`] (decoded from the payload) or the
/// [`RawMessage`] itself.
pub trait FromMessage: Sized + Send + 'static {
    /// The full protobuf name of the type, if it is an event.
    const FULL_NAME: Option<&'static str>;
    /// Builds the argument from the message. Failing is a [`ErrorClass::Decode`] error.
    fn from_message(msg: &RawMessage) -> Result<Self, HandlerError>;
}

impl<E: Event> FromMessage for E {
    const FULL_NAME: Option<&'static str> = Some(E::FULL_NAME);
    fn from_message(msg: &RawMessage) -> Result<Self, HandlerError> {
        E::decode(&msg.payload[..]).map_err(|e| {
            HandlerError::new(
                ErrorClass::Decode,
                format!(
                    "payload on `{}` is not a valid `{}`: {e}",
                    msg.topic(),
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
            Ok(value) => self.f.call(value, msg.delivery),
            Err(e) => Box::pin(std::future::ready(Err(e))),
        }
    }
}
