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
mod settings;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use tokio_util::sync::CancellationToken;

pub(crate) use self::dead_letter::DeadLetter;
use self::first_poll::{FirstPoll, first_poll};
use self::flow::Flow;
pub(crate) use self::settings::{DeliverySettings, Verdict};
use crate::config::DeadLetterSettings;
use crate::middleware::Pipeline;
use crate::{HandlerError, RawMessage};

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
    /// cancel-safe: a message is either in `into` or still in the source.
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

    /// The message as a handler sees it.
    fn message(&self, msg: &Self::Message) -> RawMessage;

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
    /// The handler and its middleware.
    pub(crate) pipeline: Pipeline,
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
}

/// A message waiting for a handler slot.
struct Held<M> {
    msg: M,
    /// When it was last known alive (taken, or kept alive); only tracked where it matters.
    alive: Option<Instant>,
}

/// What a future in the running set finished with.
enum Finished<M> {
    /// A handler that waited after its first poll ended with `outcome`.
    Handled {
        msg: M,
        id: u64,
        attempt: u32,
        outcome: Result<(), HandlerError>,
        started: Option<Instant>,
    },
    /// A settle action (ack, redelivery, dead letter) completed.
    Settled,
}

/// Handlers and settle actions under way.
struct Running<M> {
    futures: FuturesUnordered<Pin<Box<dyn Future<Output = Finished<M>> + Send>>>,
    /// The handlers among them, by id: what each handles and since when, for the log of a
    /// close that had to cancel them.
    handlers: HashMap<u64, Handling>,
    next_id: u64,
}

/// What a running handler handles.
struct Handling {
    topic: String,
    sequence: u64,
    since: Instant,
}

impl<M> Running<M> {
    fn new() -> Self {
        Running {
            futures: FuturesUnordered::new(),
            handlers: HashMap::new(),
            next_id: 0,
        }
    }

    fn len(&self) -> usize {
        self.futures.len()
    }

    fn is_empty(&self) -> bool {
        self.futures.is_empty()
    }

    fn push(&mut self, future: impl Future<Output = Finished<M>> + Send + 'static) {
        self.futures.push(Box::pin(future));
    }

    async fn next(&mut self) -> Option<Finished<M>> {
        let done = self.futures.next().await;
        if let Some(Finished::Handled { id, .. }) = &done {
            self.handlers.remove(id);
        }
        done
    }
}

impl<S: Source> Worker<S> {
    /// Takes messages, runs handlers and settles messages until the bus closes.
    pub(crate) async fn run(mut self) {
        let concurrency = self.settings.concurrency;
        let every = self.settings.keep_alive_every();
        let mut flow = Flow::new(&self.settings, S::REDELIVERS_UNSETTLED);
        let mut running: Running<S::Message> = Running::new();
        let mut held: VecDeque<Held<S::Message>> = VecDeque::new();
        let mut arrived = Vec::new();
        let mut keep_alive = tokio::time::interval(every);
        keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Made once: a fresh `cancelled()` per iteration would lock the token each time.
        let shutdown = self.shutdown.clone();
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        loop {
            while running.len() < concurrency {
                let Some(next) = held.pop_front() else { break };
                self.start(next.msg, &mut running, &mut flow).await;
            }
            let want = flow.want(running.len() + held.len(), self.source.unsettled());
            tokio::select! {
                biased;
                _ = &mut cancelled => break,
                Some(done) = running.next(), if !running.is_empty() => {
                    self.finished(done, &mut running, &mut flow).await;
                }
                _ = keep_alive.tick(), if S::REDELIVERS_UNSETTLED && !held.is_empty() => {
                    keep_held_alive::<S>(&mut held, every).await;
                }
                open = self.source.recv(want, &mut arrived) => {
                    if !open {
                        break;
                    }
                    let alive = S::REDELIVERS_UNSETTLED.then(Instant::now);
                    held.extend(arrived.drain(..).map(|msg| Held { msg, alive }));
                }
            }
        }
        self.close(held, running, &mut flow).await;
    }

    /// Runs the handler on `msg`: in place to its first poll, then, if it waits, in `running`.
    async fn start(&mut self, msg: S::Message, running: &mut Running<S::Message>, flow: &mut Flow) {
        let raw = self.source.message(&msg);
        let attempt = raw.delivery.attempt();
        let started = S::REDELIVERS_UNSETTLED.then(Instant::now);
        match first_poll(&self.pipeline, raw, self.settings.trace_context).await {
            FirstPoll::Finished(outcome) => {
                flow.record(started);
                self.conclude(msg, attempt, outcome, running).await;
            }
            FirstPoll::Waiting(handler) => {
                let every = self.settings.keep_alive_every();
                let limit = self.settings.handler_timeout;
                let id = running.next_id;
                running.next_id += 1;
                let raw = self.source.message(&msg);
                running.handlers.insert(
                    id,
                    Handling {
                        topic: raw.delivery.topic().to_owned(),
                        sequence: raw.delivery.stream_sequence(),
                        since: Instant::now(),
                    },
                );
                running.push(async move {
                    let outcome =
                        keep_alive_while::<S, _>(&msg, every, handler.finish(limit)).await;
                    Finished::Handled {
                        msg,
                        id,
                        attempt,
                        outcome,
                        started,
                    }
                });
            }
        }
    }

    async fn finished(
        &mut self,
        done: Finished<S::Message>,
        running: &mut Running<S::Message>,
        flow: &mut Flow,
    ) {
        if let Finished::Handled {
            msg,
            attempt,
            outcome,
            started,
            ..
        } = done
        {
            flow.record(started);
            self.conclude(msg, attempt, outcome, running).await;
        }
    }

    /// Settles a message whose handler ended with `outcome`, as the verdict says.
    async fn conclude(
        &mut self,
        msg: S::Message,
        attempt: u32,
        outcome: Result<(), HandlerError>,
        running: &mut Running<S::Message>,
    ) {
        match self.settings.verdict(attempt, outcome) {
            Verdict::Ack => settle(self.source.ack(msg), running).await,
            Verdict::Redeliver(delay, e) => {
                tracing::debug!(
                    handler = %self.name, group = %self.group, attempt, error = %e, ?delay,
                    "redelivering"
                );
                settle(self.source.redeliver(msg, delay), running).await;
            }
            Verdict::DeadLetter(e) => {
                let raw = self.source.message(&msg);
                let letter = DeadLetter::new(
                    &self.dead_letters,
                    &raw.delivery,
                    raw.payload,
                    &e,
                    self.source.max_payload(),
                );
                settle(self.source.dead_letter(msg, letter), running).await;
            }
        }
    }

    /// Closing: take nothing more, give back what was not started, let running handlers finish
    /// (and settle) within the drain timeout.
    async fn close(
        mut self,
        held: VecDeque<Held<S::Message>>,
        mut running: Running<S::Message>,
        flow: &mut Flow,
    ) {
        self.source
            .give_back(held.into_iter().map(|h| h.msg).collect())
            .await;
        let timeout = self.drain_timeout;
        let drained = tokio::time::timeout(timeout, async {
            while let Some(done) = running.next().await {
                self.finished(done, &mut running, flow).await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                handler = %self.name, group = %self.group, still_running = running.handlers.len(),
                ?timeout,
                "handlers still running at the drain timeout were cancelled; their messages are \
                 delivered again (give handlers a timeout, or raise `drain_timeout`)"
            );
            for h in running.handlers.values() {
                tracing::warn!(
                    handler = %self.name, group = %self.group, topic = %h.topic,
                    sequence = h.sequence, running_for = ?h.since.elapsed(),
                    "handler stuck at close"
                );
            }
        }
        drop(running);
        self.source.close().await;
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
async fn keep_held_alive<S: Source>(held: &mut VecDeque<Held<S::Message>>, every: Duration) {
    let now = Instant::now();
    for h in held.iter_mut() {
        if h.alive.is_none_or(|t| now.duration_since(t) >= every / 2) {
            S::keep_alive(&h.msg).await;
            h.alive = Some(now);
        }
    }
}

/// Runs `fut` (a handler); where the backend would redeliver, keeps `msg` alive every `every`
/// while it runs.
async fn keep_alive_while<S: Source, F: Future>(
    msg: &S::Message,
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
            _ = tick.tick() => S::keep_alive(msg).await,
        }
    }
}
