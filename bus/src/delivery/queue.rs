//! The messages a worker holds until a handler slot is free, in arrival order; for a
//! subscription ordered by key, at most one message of each key is out (started, or waiting
//! for its redelivery) while the later ones of that key wait behind it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::RawMessage;

/// A message waiting for a handler slot.
pub(super) struct Held<M> {
    pub(super) msg: M,
    /// The message as handlers see it, when it was built early (to find its key).
    pub(super) raw: Option<RawMessage>,
    /// Its ordering key and stream sequence, when ordered by key and it has a key.
    pub(super) key: Option<(u64, u64)>,
    /// When it arrived.
    pub(super) arrived: Instant,
    /// When it was last known alive (taken, or kept alive); only tracked where it matters.
    pub(super) alive: Option<Instant>,
}

/// One key's state: the message that is out, and the ones waiting behind it.
struct Key<M> {
    /// Stream sequence of the message that is out, if one is.
    out: Option<u64>,
    /// When a message out for redelivery counts as settled elsewhere (another member of the
    /// group got its redelivery), so the key moves on.
    release_at: Option<Instant>,
    waiting: VecDeque<Held<M>>,
}

impl<M> Default for Key<M> {
    fn default() -> Self {
        Key {
            out: None,
            release_at: None,
            waiting: VecDeque::new(),
        }
    }
}

/// What became of the message that was out for a key.
#[derive(Clone, Copy, Debug)]
pub(super) enum KeyOutcome {
    /// Acknowledged or dead-lettered: the next message of the key may go.
    Settled,
    /// To be redelivered after `delay`: the key waits for it.
    Redelivered(Duration),
}

/// The held messages of one worker.
pub(super) struct Queue<M> {
    ready: VecDeque<Held<M>>,
    keys: HashMap<u64, Key<M>>,
    /// Messages waiting behind their key.
    behind: usize,
    /// How long a redelivery may take to come back before its key moves on.
    grace: Duration,
}

impl<M> Queue<M> {
    /// An empty queue; `grace` is how long past its delay a redelivery may take to come back
    /// (on JetStream, it may go to another member of the group).
    pub(super) fn new(grace: Duration) -> Self {
        Queue {
            ready: VecDeque::new(),
            keys: HashMap::new(),
            behind: 0,
            grace,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.behind
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages that may start now.
    pub(super) fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Takes in an arrived message.
    pub(super) fn arrive(&mut self, held: Held<M>) {
        let Some((key, sequence)) = held.key else {
            self.ready.push_back(held);
            return;
        };
        let state = self.keys.entry(key).or_default();
        if state.out == Some(sequence) {
            // The redelivery of the message that is out: it goes on.
            state.release_at = None;
            self.ready.push_back(held);
        } else if state.out.is_some() || !state.waiting.is_empty() {
            state.waiting.push_back(held);
            self.behind += 1;
        } else {
            state.out = Some(sequence);
            self.ready.push_back(held);
        }
    }

    /// The next message that may start.
    pub(super) fn next(&mut self) -> Option<Held<M>> {
        self.ready.pop_front()
    }

    /// When the first ready message arrived.
    pub(super) fn oldest_ready(&self) -> Option<Instant> {
        self.ready.front().map(|h| h.arrived)
    }

    /// Records what became of the message `sequence` that was out for `key`.
    pub(super) fn settled(&mut self, key: u64, sequence: u64, outcome: KeyOutcome) {
        let Some(state) = self.keys.get_mut(&key) else {
            return;
        };
        if state.out != Some(sequence) {
            return;
        }
        match outcome {
            KeyOutcome::Redelivered(delay) => {
                state.release_at = Some(Instant::now() + delay + self.grace);
            }
            KeyOutcome::Settled => self.move_on(key),
        }
    }

    /// Moves on the keys whose redelivery did not come back in time.
    pub(super) fn release_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .keys
            .iter()
            .filter(|(_, k)| k.release_at.is_some_and(|t| t <= now))
            .map(|(key, _)| *key)
            .collect();
        for key in overdue {
            tracing::debug!(
                key,
                "a redelivery did not come back in time; its key moves on"
            );
            self.move_on(key);
        }
    }

    /// The message out for `key` is done with: the next one of the key goes.
    fn move_on(&mut self, key: u64) {
        let Some(state) = self.keys.get_mut(&key) else {
            return;
        };
        state.release_at = None;
        match state.waiting.pop_front() {
            Some(next) => {
                self.behind -= 1;
                state.out = next.key.map(|(_, sequence)| sequence);
                self.ready.push_back(next);
            }
            None => {
                self.keys.remove(&key);
            }
        }
    }

    /// Every held message, ready or behind its key.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Held<M>> {
        self.ready
            .iter_mut()
            .chain(self.keys.values_mut().flat_map(|k| k.waiting.iter_mut()))
    }

    /// Takes every held message out.
    pub(super) fn drain(&mut self) -> Vec<M> {
        let mut all: Vec<M> = self.ready.drain(..).map(|h| h.msg).collect();
        for (_, mut k) in self.keys.drain() {
            all.extend(k.waiting.drain(..).map(|h| h.msg));
        }
        self.behind = 0;
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: u32, key: Option<(u64, u64)>) -> Held<u32> {
        Held {
            msg: id,
            raw: None,
            key,
            arrived: Instant::now(),
            alive: None,
        }
    }

    fn take_all(q: &mut Queue<u32>) -> Vec<u32> {
        std::iter::from_fn(|| q.next().map(|h| h.msg)).collect()
    }

    #[test]
    fn one_message_per_key_is_out() {
        let mut q = Queue::new(Duration::from_secs(1));
        q.arrive(held(1, Some((7, 1))));
        q.arrive(held(2, Some((7, 2))));
        q.arrive(held(3, Some((8, 3))));
        q.arrive(held(4, None));
        assert_eq!(take_all(&mut q), [1, 3, 4]);
        assert_eq!(q.len(), 1);
        q.settled(7, 1, KeyOutcome::Settled);
        assert_eq!(take_all(&mut q), [2]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_redelivery_holds_its_key_and_goes_first() {
        let mut q = Queue::new(Duration::from_secs(60));
        q.arrive(held(1, Some((7, 1))));
        assert_eq!(take_all(&mut q), [1]);
        q.settled(7, 1, KeyOutcome::Redelivered(Duration::from_millis(10)));
        q.arrive(held(2, Some((7, 2))));
        assert_eq!(
            take_all(&mut q),
            Vec::<u32>::new(),
            "2 waits for 1's redelivery"
        );
        q.arrive(held(10, Some((7, 1)))); // the redelivery of 1
        assert_eq!(take_all(&mut q), [10]);
        q.settled(7, 1, KeyOutcome::Settled);
        assert_eq!(take_all(&mut q), [2]);
    }

    #[test]
    fn a_redelivery_that_does_not_come_back_releases_its_key() {
        let mut q = Queue::new(Duration::ZERO);
        q.arrive(held(1, Some((7, 1))));
        q.next();
        q.settled(7, 1, KeyOutcome::Redelivered(Duration::ZERO));
        q.arrive(held(2, Some((7, 2))));
        std::thread::sleep(Duration::from_millis(2));
        q.release_overdue();
        assert_eq!(take_all(&mut q), [2]);
        assert_eq!(q.drain(), Vec::<u32>::new());
    }
}
