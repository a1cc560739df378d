//! Delivery: the loop every backend runs for a subscription, from a message taken from the
//! backend to its acknowledgement, redelivery or dead letter.
//!
//! A backend supplies a [`Source`]: where messages come from and how each is settled (ack,
//! redeliver after a delay, dead-letter, keep alive). Everything else is here, the same for
//! every backend:
//!
//! - how many messages to take ahead of the handlers ([`flow`]);
//! - at most `concurrency` handlers at once, each polled once in place before it gets a future
//!   of its own ([`first_poll`]), with panics caught;
//! - the verdict on each outcome ([`DeliverySettings::verdict`]) and the dead letter
//!   ([`DeadLetter`]);
//! - keeping held and running messages alive where the backend would redeliver them;
//! - closing: stop taking, give back what was not started, let running handlers finish within
//!   `drain_timeout`.

mod dead_letter;
mod first_poll;
pub(crate) mod flow;
mod queue;
mod running;
mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub(crate) use self::dead_letter::DeadLetter;
use self::first_poll::{FirstPoll, first_poll};
use self::flow::Flow;
use self::queue::{Held, KeyOutcome, Queue};
use self::running::{Finished, InHand, Running};
pub(crate) use self::settings::{DeliverySettings, Verdict};
use crate::config::DeadLetterSettings;
use crate::subscription::{Handling, KeyFn};
use bytes::Bytes;

use self::first_poll::idle_slot;
use crate::handler::HandlerSlot;
use crate::observe::{MaybeObserver, Observer, Settled, SettledAs};
use crate::telemetry::DeliveryMetrics;
use crate::trace::Consumer;
use crate::{Delivery, HandlerError, RawMessage};

/// Where a subscription's messages come from, and how each one is settled.
///
/// The settle methods return `None` when they are done at once, or the rest of the work as a
/// future, which the worker polls once in place and keeps only if it is still pending.
pub(crate) trait Source: Send + 'static {
    /// A message taken from the source and not settled yet.
    type Message: Send + Sync + 'static;

    /// Whether the backend redelivers a message that is not settled within `ack_wait` (as
    /// JetStream does): then messages held or being handled are kept alive, and the worker
    /// takes messages ahead of its handlers (see [`flow`]).
    const REDELIVERS_UNSETTLED: bool;

    /// Waits until messages arrive and moves them into `into`. `want` is how many more the
    /// worker wants (possibly 0: then only messages the source owes it, such as due
    /// redeliveries, arrive). Returns `false` once the source has ended for good. Must be
    /// cancel-safe: a message is either in `into` or still in the source (the worker takes what
    /// is in `into` even when `recv` was cancelled).
    fn recv(
        &mut self,
        want: usize,
        into: &mut Vec<Self::Message>,
    ) -> impl Future<Output = bool> + Send;

    /// Unsettled messages the source keeps for this worker outside its hands (memory
    /// redeliveries waiting for their delay); they count toward `max_ack_pending`.
    fn unsettled(&self) -> usize {
        0
    }

    /// The payload of `msg`.
    fn payload<'m>(&self, msg: &'m Self::Message) -> &'m Bytes;

    /// The delivery metadata of `msg`.
    fn delivery(&self, msg: &Self::Message) -> Delivery;

    /// The message as a handler sees it.
    fn message(&self, msg: &Self::Message) -> RawMessage {
        RawMessage {
            payload: self.payload(msg).clone(),
            delivery: self.delivery(msg),
        }
    }

    /// The largest message the backend stores (a NATS server's `max_payload`), which decides
    /// how much room a dead letter's headers have.
    fn max_payload(&self) -> usize;

    /// Tells the backend that `msg` is still being worked on.
    fn keep_alive(msg: &Self::Message) -> impl Future<Output = ()> + Send + '_;

    /// Acknowledges `msg`.
    fn ack(&mut self, msg: Self::Message) -> Option<impl Future<Output = ()> + Send + use<Self>>;

    /// Has `msg` delivered again after `delay`.
    fn redeliver(
        &mut self,
        msg: Self::Message,
        delay: Duration,
    ) -> Option<impl Future<Output = ()> + Send + use<Self>>;

    /// Stores `letter` in the dead-letter stream, then terminates `msg` (only once the dead
    /// letter is stored).
    fn dead_letter(
        &mut self,
        msg: Self::Message,
        letter: DeadLetter,
    ) -> Option<impl Future<Output = ()> + Send + use<Self>>;

    /// At close: messages taken but never started go back to the backend at once.
    fn give_back(&mut self, unstarted: Vec<Self::Message>) -> impl Future<Output = ()> + Send;

    /// At close, after the running handlers finished or were cancelled.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// One subscription's delivery loop; [`Worker::run`] is the task the backend spawns.
pub(crate) struct Worker<S: Source> {
    /// The backend's side.
    pub(crate) source: S,
    /// The handler: one event at a time through its middleware, or batches.
    pub(crate) handling: Handling,
    /// The ordering key, when events are ordered by key.
    pub(crate) key: Option<KeyFn>,
    /// The subscription's settings.
    pub(crate) settings: DeliverySettings,
    /// Where dead letters go.
    pub(crate) dead_letters: DeadLetterSettings,
    /// The handler's name, for logs.
    pub(crate) name: Arc<str>,
    /// The group, for logs.
    pub(crate) group: Arc<str>,
    /// Cancelled when the bus closes.
    pub(crate) shutdown: CancellationToken,
    /// How long running handlers may take to finish once the bus closes.
    pub(crate) drain_timeout: Duration,
    /// Told how each delivery is settled, if the bus has an observer.
    pub(crate) observer: MaybeObserver,
    /// The subscription's delivery series (`bus::telemetry`).
    pub(crate) metrics: DeliveryMetrics,
}

impl<S: Source> Worker<S> {
    /// Takes messages, runs handlers and settles messages until the bus closes.
    pub(crate) async fn run(mut self) {
        let every = self.settings.keep_alive_every();
        let mut flow = Flow::new(&self.flow_settings(), S::REDELIVERS_UNSETTLED);
        let mut running: Running<S::Message> = Running::new();
        let mut queue = Queue::new(self.settings.ack_wait);
        let mut slot = idle_slot();
        let mut arrived = Vec::new();
        let mut keep_alive = tokio::time::interval(every);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Made once: a fresh `cancelled()` per iteration would lock the token each time.
        let shutdown = self.shutdown.clone();
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        loop {
            // A `recv` cut short by another branch may have moved messages into `arrived`
            // already (it yields after taking a partial batch): queue them now, or they would
            // wait for the next arrival, which may never come.
            if !arrived.is_empty() {
                self.arrive(&mut arrived, &mut queue);
            }
            self.start_ready(&mut slot, &mut queue, &mut running, &mut flow)
                .await;
            let want = flow.want(running.len() + queue.len(), self.source.unsettled());
            let batch_due = self.batch_due(&queue);
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                Some(done) = running.next(), if !running.is_empty() => {
                    self.finished(done, &mut queue, &mut running, &mut flow).await;
                }
                _ = keep_alive.tick(), if !queue.is_empty() => {
                    queue.release_overdue();
                    if S::REDELIVERS_UNSETTLED {
                        keep_held_alive::<S>(&mut queue, every).await;
                    }
                }
                _ = sleep_until(batch_due), if batch_due.is_some() => {}
                open = self.source.recv(want, &mut arrived) => {
                    if !open {
                        break;
                    }
                    self.arrive(&mut arrived, &mut queue);
                }
            }
        }
        self.close(queue, running, &mut flow).await;
    }

    /// The settings the flow works with: in batch mode a handler slot takes a whole batch.
    fn flow_settings(&self) -> DeliverySettings {
        match &self.handling {
            Handling::Each(_) => self.settings.clone(),
            Handling::Batch { options, .. } => DeliverySettings {
                concurrency: self.settings.concurrency * options.max_events,
                ..self.settings.clone()
            },
        }
    }

    /// Puts arrived messages in the queue, finding their keys when ordered by key.
    fn arrive(&self, arrived: &mut Vec<S::Message>, queue: &mut Queue<S::Message>) {
        let now = Instant::now();
        let alive = S::REDELIVERS_UNSETTLED.then_some(now);
        for msg in arrived.drain(..) {
            let (raw, key) = match &self.key {
                None => (None, None),
                Some(key_of) => {
                    let raw = self.source.message(&msg);
                    let key = key_of(&raw).map(|k| (k, raw.delivery.stream_sequence()));
                    (Some(raw), key)
                }
            };
            queue.arrive(Held {
                msg,
                raw,
                key,
                arrived: now,
                alive,
            });
        }
    }

    /// Starts what the free handler slots can take: single messages, or a batch that is full
    /// or has waited `max_wait`.
    async fn start_ready(
        &mut self,
        slot: &mut HandlerSlot,
        queue: &mut Queue<S::Message>,
        running: &mut Running<S::Message>,
        flow: &mut Flow,
    ) {
        let concurrency = self.settings.concurrency;
        match &self.handling {
            Handling::Each(_) => {
                while running.len() < concurrency {
                    let Some(next) = queue.next() else { break };
                    self.start(next, slot, queue, running, flow).await;
                }
            }
            Handling::Batch { options, .. } => {
                let options = *options;
                while running.len() < concurrency && queue.ready() > 0 {
                    let full = queue.ready() >= options.max_events;
                    let waited = queue
                        .oldest_ready()
                        .is_some_and(|t| t.elapsed() >= options.max_wait);
                    if !full && !waited {
                        break;
                    }
                    let batch: Vec<_> = std::iter::from_fn(|| queue.next())
                        .take(options.max_events)
                        .collect();
                    self.start_batch(batch, running);
                }
            }
        }
    }

    /// When the first ready message of a partial batch has waited `max_wait`.
    fn batch_due(&self, queue: &Queue<S::Message>) -> Option<Instant> {
        match &self.handling {
            Handling::Batch { options, .. } if queue.ready() > 0 => {
                queue.oldest_ready().map(|t| t + options.max_wait)
            }
            _ => None,
        }
    }

    /// Runs the handler on one message: in place to its first poll, then, if it waits, in
    /// `running`.
    async fn start(
        &mut self,
        held: Held<S::Message>,
        slot: &mut HandlerSlot,
        queue: &mut Queue<S::Message>,
        running: &mut Running<S::Message>,
        flow: &mut Flow,
    ) {
        let Handling::Each(pipeline) = &self.handling else {
            unreachable!("single messages are started only without a batch handler")
        };
        let Held { msg, raw, key, .. } = held;
        let started = S::REDELIVERS_UNSETTLED.then(Instant::now);
        let began = Instant::now();
        self.metrics.started(1);
        let trace_context = self.settings.trace_context;
        let (attempt, first) = match raw {
            Some(raw) => {
                let attempt = raw.delivery.attempt();
                let first =
                    first_poll(pipeline, &raw.payload, raw.delivery, slot, trace_context).await;
                (attempt, first)
            }
            None => {
                let delivery = self.source.delivery(&msg);
                let attempt = delivery.attempt();
                let payload = self.source.payload(&msg);
                let first = first_poll(pipeline, payload, delivery, slot, trace_context).await;
                (attempt, first)
            }
        };
        match first {
            FirstPoll::Finished(outcome) => {
                flow.record(started);
                let done = InHand {
                    msg,
                    attempt,
                    key,
                    began,
                };
                self.conclude(done, outcome, queue, running).await;
            }
            FirstPoll::Waiting(handler) => {
                let every = self.settings.keep_alive_every();
                let limit = self.settings.handler_timeout;
                let id = running.track(self.source.delivery(&msg));
                running.push(async move {
                    let outcome =
                        keep_alive_while::<S, _>(&[&msg], every, handler.finish(limit)).await;
                    Finished::Handled {
                        done: vec![(
                            InHand {
                                msg,
                                attempt,
                                key,
                                began,
                            },
                            outcome,
                        )],
                        id,
                        started,
                    }
                });
            }
        }
    }

    /// Runs the batch handler on `batch`.
    fn start_batch(&mut self, batch: Vec<Held<S::Message>>, running: &mut Running<S::Message>) {
        let Handling::Batch { handler, .. } = &self.handling else {
            unreachable!("batches are started only with a batch handler")
        };
        let mut raws = Vec::with_capacity(batch.len());
        let mut in_hand = Vec::with_capacity(batch.len());
        let began = Instant::now();
        self.metrics.started(batch.len());
        for Held { msg, raw, key, .. } in batch {
            let raw = raw.unwrap_or_else(|| self.source.message(&msg));
            in_hand.push(InHand {
                msg,
                attempt: raw.delivery.attempt(),
                key,
                began,
            });
            raws.push(raw);
        }
        let id = running.track(raws[0].delivery.clone());
        let started = S::REDELIVERS_UNSETTLED.then(Instant::now);
        let every = self.settings.keep_alive_every();
        let limit = self.settings.handler_timeout;
        let n = raws.len();
        let trace = if self.settings.trace_context {
            Consumer::batch(&raws)
        } else {
            Consumer::none()
        };
        let call = first_poll::call_batch(&trace, n, || handler.call(&raws));
        let run = first_poll::run_batch(call, n, limit, trace);
        running.push(async move {
            let msgs: Vec<&S::Message> = in_hand.iter().map(|h| &h.msg).collect();
            let outcomes = keep_alive_while::<S, _>(&msgs, every, run).await;
            Finished::Handled {
                done: in_hand.into_iter().zip(outcomes).collect(),
                id,
                started,
            }
        });
    }

    async fn finished(
        &mut self,
        done: Finished<S::Message>,
        queue: &mut Queue<S::Message>,
        running: &mut Running<S::Message>,
        flow: &mut Flow,
    ) {
        if let Finished::Handled { done, started, .. } = done {
            flow.record(started);
            for (in_hand, outcome) in done {
                self.conclude(in_hand, outcome, queue, running).await;
            }
        }
    }

    /// Settles a message whose handler ended with `outcome`, as the verdict says, and lets the
    /// next message of its key go when it is done with.
    async fn conclude(
        &mut self,
        in_hand: InHand<S::Message>,
        outcome: Result<(), HandlerError>,
        queue: &mut Queue<S::Message>,
        running: &mut Running<S::Message>,
    ) {
        let InHand {
            msg,
            attempt,
            key,
            began,
        } = in_hand;
        let observed = self.observed(&msg);
        let key_outcome = match self.settings.verdict(attempt, outcome) {
            Verdict::Ack => {
                let ack = self.source.ack(msg);
                settle_now(&self.shutdown, &self.name, ack).await;
                self.metrics.acked(began.elapsed());
                notify(observed, SettledAs::Acked);
                KeyOutcome::Settled
            }
            Verdict::Redeliver(delay, e) => {
                tracing::debug!(
                    handler = %self.name, group = %self.group, attempt, error = %e, ?delay,
                    "redelivering"
                );
                let redeliver = self.source.redeliver(msg, delay);
                settle_now(&self.shutdown, &self.name, redeliver).await;
                self.metrics.redelivered(attempt, began.elapsed());
                notify(observed, SettledAs::redelivered(delay, &e));
                KeyOutcome::Redelivered(delay)
            }
            Verdict::DeadLetter(e) => {
                self.metrics.dead_lettered(e.class(), began.elapsed());
                let raw = self.source.message(&msg);
                let letter = DeadLetter::new(
                    &self.dead_letters,
                    &raw.delivery,
                    raw.payload,
                    &e,
                    self.source.max_payload(),
                );
                let stored = self.source.dead_letter(msg, letter);
                let as_ = SettledAs::dead_lettered(&e);
                settle(then_notify(stored, observed, as_), running).await;
                KeyOutcome::Settled
            }
        };
        if let Some((key, sequence)) = key {
            queue.settled(key, sequence, key_outcome);
        }
    }

    /// What the observer, if any, is told about `msg` once it is settled.
    fn observed(&self, msg: &S::Message) -> Option<Observed> {
        let observer = self.observer.as_ref()?;
        Some(Observed {
            observer: Arc::clone(observer),
            handler: Arc::clone(&self.name),
            delivery: self.source.delivery(msg),
            payload: self.source.payload(msg).clone(),
        })
    }

    /// Closing: take nothing more, give back what was not started, let running handlers finish
    /// (and settle) within the drain timeout.
    async fn close(
        mut self,
        mut queue: Queue<S::Message>,
        mut running: Running<S::Message>,
        flow: &mut Flow,
    ) {
        self.source.give_back(queue.drain()).await;
        let timeout = self.drain_timeout;
        let drained = tokio::time::timeout(timeout, async {
            while let Some(done) = running.next().await {
                self.finished(done, &mut queue, &mut running, flow).await;
            }
        })
        .await;
        if drained.is_err() {
            running.log_stuck(&self.name, &self.group, timeout);
        }
        drop(running);
        self.metrics.stopped();
        self.source.close().await;
    }
}

/// Runs a quick settle action (an ack, a redelivery request: a message queued on the
/// connection) here, without a future of its own. While the bus is open, a close cuts the wait
/// short (the server then delivers the message again); while closing, the drain timeout bounds
/// it.
async fn settle_now(
    shutdown: &CancellationToken,
    handler: &str,
    action: Option<impl Future<Output = ()>>,
) {
    let Some(action) = action else { return };
    let mut action = std::pin::pin!(action);
    // Most are done at once: queued on the connection.
    if futures::poll!(action.as_mut()).is_ready() {
        return;
    }
    if shutdown.is_cancelled() {
        action.await;
        return;
    }
    tokio::select! {
        biased;
        () = &mut action => {}
        () = shutdown.cancelled() => {
            tracing::debug!(
                handler,
                "a settle action was cut short by close; the server delivers the message again"
            );
        }
    }
}

/// A settled message the observer is about to hear of.
struct Observed {
    observer: Arc<dyn Observer>,
    handler: Arc<str>,
    delivery: Delivery,
    payload: Bytes,
}

/// Tells the observer, if any, that a message was settled `as_`.
fn notify(observed: Option<Observed>, as_: SettledAs) {
    if let Some(o) = observed {
        o.observer.settled(Settled {
            handler: o.handler,
            delivery: o.delivery,
            payload: o.payload,
            outcome: as_,
        });
    }
}

/// `action`, then telling the observer; told at once when there is no action left to run.
fn then_notify<F>(
    action: Option<F>,
    observed: Option<Observed>,
    as_: SettledAs,
) -> Option<impl Future<Output = ()> + Send + 'static>
where
    F: Future<Output = ()> + Send + 'static,
{
    match action {
        None => {
            notify(observed, as_);
            None
        }
        Some(action) => Some(async move {
            action.await;
            notify(observed, as_);
        }),
    }
}

/// Runs a settle action: done already, or polled once in place and kept in `running` only if it
/// still waits.
async fn settle<M, F>(action: Option<F>, running: &mut Running<M>)
where
    F: Future<Output = ()> + Send + 'static,
{
    let Some(action) = action else { return };
    let mut action = Box::pin(action);
    if futures::poll!(action.as_mut()).is_pending() {
        running.push(async move {
            action.await;
            Finished::Settled
        });
    }
}

/// Keeps alive the held messages that were not reported for half a period.
async fn keep_held_alive<S: Source>(queue: &mut Queue<S::Message>, every: Duration) {
    let now = Instant::now();
    for h in queue.iter_mut() {
        if h.alive.is_none_or(|t| now.duration_since(t) >= every / 2) {
            S::keep_alive(&h.msg).await;
            h.alive = Some(now);
        }
    }
}

/// Runs `fut` (a handler); where the backend would redeliver, keeps `msgs` alive every `every`
/// while it runs.
async fn keep_alive_while<S: Source, F: Future>(
    msgs: &[&S::Message],
    every: Duration,
    fut: F,
) -> F::Output {
    if !S::REDELIVERS_UNSETTLED {
        return fut.await;
    }
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                for msg in msgs {
                    S::keep_alive(msg).await;
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
