//! The open batches, in memory. One task (the dispatcher) owns them: it adds messages and
//! closes due batches in turn, so an add never races a flush. Changes are staged first
//! ([`Additions`], [`Due`]) and applied only once their rows are committed, so a failed
//! transaction leaves memory as it was and the work is simply done again.
//!
//! An ordered index of flush times finds the next due time and the due batches in O(log n),
//! however many batches are open.

use std::collections::{BTreeSet, HashMap};

use crate::config::BufferConfig;
use crate::inbox::store::StoredEvent;
use crate::jobs::event_time_ms;

/// One open batch per route and conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchKey {
    pub route: String,
    pub conversation: String,
}

/// An open batch: its times (pipeline clock, Unix ms) and its messages.
#[derive(Debug, Clone)]
pub struct Batch {
    pub first_at: i64,
    pub last_at: i64,
    pub flush_at: i64,
    /// In the order they were added; [`Batch::in_event_order`] sorts them for the job.
    pub events: Vec<StoredEvent>,
}

impl Batch {
    /// The messages as the job takes them: by event time, then id.
    pub fn in_event_order(&self) -> Vec<StoredEvent> {
        let mut events = self.events.clone();
        events.sort_by_key(|e| (event_time_ms(e), e.id));
        events
    }
}

/// A batch as it will be once staged messages are added: the row `buffers` gets, and the
/// messages `buffered_events` gets.
#[derive(Debug, Clone)]
pub struct Change {
    pub first_at: i64,
    pub last_at: i64,
    pub flush_at: i64,
    /// Messages in the batch once the new ones are added.
    pub messages: usize,
    pub new_events: Vec<StoredEvent>,
}

/// Messages staged for their batches, not yet in memory.
#[derive(Debug, Default)]
pub struct Additions {
    changes: Vec<(BatchKey, Change)>,
    index: HashMap<BatchKey, usize>,
}

impl Additions {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Messages staged.
    pub fn messages(&self) -> usize {
        self.changes.iter().map(|(_, c)| c.new_events.len()).sum()
    }

    pub fn changes(&self) -> &[(BatchKey, Change)] {
        &self.changes
    }
}

/// The open batches and their flush times.
#[derive(Debug, Default)]
pub struct OpenBuffers {
    batches: HashMap<BatchKey, Batch>,
    /// `(flush_at, key)` of every open batch, earliest first.
    by_flush_at: BTreeSet<(i64, BatchKey)>,
    messages: usize,
}

impl OpenBuffers {
    /// Open batches.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Messages waiting in open batches.
    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn get(&self, key: &BatchKey) -> Option<&Batch> {
        self.batches.get(key)
    }

    /// The earliest flush time of any open batch.
    pub fn next_flush(&self) -> Option<i64> {
        self.by_flush_at.first().map(|(at, _)| *at)
    }

    /// Up to `limit` batches due at `now`, earliest first.
    pub fn due(&self, now: i64, limit: usize) -> Vec<BatchKey> {
        self.by_flush_at
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Stages `event` for the batch of `key` at `now`: the flush time moves to
    /// `now + window`, never past `first + max_wait`, and to `now` once `max_messages` wait.
    pub fn stage(
        &self,
        additions: &mut Additions,
        key: BatchKey,
        event: StoredEvent,
        now: i64,
        config: &BufferConfig,
    ) {
        let at = match additions.index.get(&key) {
            Some(at) => *at,
            None => {
                let (first_at, messages) = match self.batches.get(&key) {
                    Some(batch) => (batch.first_at, batch.events.len()),
                    None => (now, 0),
                };
                additions.changes.push((
                    key.clone(),
                    Change {
                        first_at,
                        last_at: now,
                        flush_at: now,
                        messages,
                        new_events: Vec::new(),
                    },
                ));
                let at = additions.changes.len() - 1;
                additions.index.insert(key, at);
                at
            }
        };
        let change = &mut additions.changes[at].1;
        change.messages += 1;
        change.last_at = now;
        change.flush_at = flush_time(change.first_at, now, change.messages, config);
        change.new_events.push(event);
    }

    /// Adds the staged messages, once their rows are committed.
    pub fn apply(&mut self, additions: Additions) {
        for (key, change) in additions.changes {
            match self.batches.get_mut(&key) {
                Some(batch) => {
                    self.messages += change.new_events.len();
                    self.by_flush_at.remove(&(batch.flush_at, key.clone()));
                    self.by_flush_at.insert((change.flush_at, key));
                    batch.last_at = change.last_at;
                    batch.flush_at = change.flush_at;
                    batch.events.extend(change.new_events);
                }
                None => {
                    self.open(
                        key,
                        Batch {
                            first_at: change.first_at,
                            last_at: change.last_at,
                            flush_at: change.flush_at,
                            events: change.new_events,
                        },
                    );
                }
            }
        }
    }

    /// Puts a batch in memory as it is (loading at startup); replaces one with the same key.
    pub fn open(&mut self, key: BatchKey, batch: Batch) {
        self.close(std::slice::from_ref(&key));
        self.messages += batch.events.len();
        self.by_flush_at.insert((batch.flush_at, key.clone()));
        self.batches.insert(key, batch);
    }

    /// Removes flushed batches, once their deletion is committed; returns the messages they held.
    pub fn close(&mut self, keys: &[BatchKey]) -> usize {
        let mut removed = 0;
        for key in keys {
            if let Some(batch) = self.batches.remove(key) {
                self.by_flush_at.remove(&(batch.flush_at, key.clone()));
                removed += batch.events.len();
            }
        }
        self.messages -= removed;
        removed
    }
}

/// When a batch holding `messages`, the first added at `first_at` and the last at `last_at`,
/// is due.
pub fn flush_time(first_at: i64, last_at: i64, messages: usize, config: &BufferConfig) -> i64 {
    let max_messages = usize::try_from(config.max_messages).unwrap_or(usize::MAX);
    if messages >= max_messages {
        return last_at;
    }
    let window = i64::try_from(config.window_ms).unwrap_or(i64::MAX);
    let max_wait = i64::try_from(config.max_wait_ms).unwrap_or(i64::MAX);
    last_at
        .saturating_add(window)
        .min(first_at.saturating_add(max_wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: BufferConfig = BufferConfig {
        enabled: true,
        window_ms: 100,
        max_wait_ms: 250,
        max_messages: 3,
    };

    fn key(conversation: &str) -> BatchKey {
        BatchKey {
            route: "r".to_owned(),
            conversation: conversation.to_owned(),
        }
    }

    fn event(id: i64) -> StoredEvent {
        StoredEvent {
            id,
            webhook: "w".to_owned(),
            event_type: "whatsapp.message.received".to_owned(),
            phone_number_id: None,
            conversation_id: None,
            message_id: None,
            occurred_at: None,
            received_at: 0,
            payload: "{}".to_owned(),
            flags: None,
        }
    }

    fn add(open: &mut OpenBuffers, conversation: &str, id: i64, now: i64) {
        let mut additions = Additions::default();
        open.stage(&mut additions, key(conversation), event(id), now, &CONFIG);
        open.apply(additions);
    }

    #[test]
    fn staged_messages_change_nothing_until_applied() {
        let mut open = OpenBuffers::default();
        let mut additions = Additions::default();
        open.stage(&mut additions, key("a"), event(1), 0, &CONFIG);
        open.stage(&mut additions, key("a"), event(2), 10, &CONFIG);
        assert!(open.is_empty());
        assert_eq!(additions.messages(), 2);
        let (_, change) = &additions.changes()[0];
        assert_eq!(
            (
                change.first_at,
                change.last_at,
                change.messages,
                change.flush_at
            ),
            (0, 10, 2, 110)
        );
        open.apply(additions);
        assert_eq!(
            (open.len(), open.messages(), open.next_flush()),
            (1, 2, Some(110))
        );
    }

    #[test]
    fn each_message_restarts_the_window_up_to_max_wait_and_max_messages_flushes_now() {
        let mut open = OpenBuffers::default();
        add(&mut open, "a", 1, 0);
        assert_eq!(open.next_flush(), Some(100));
        add(&mut open, "a", 2, 90);
        assert_eq!(open.next_flush(), Some(190));
        let mut wait = OpenBuffers::default();
        add(&mut wait, "b", 1, 0);
        add(&mut wait, "b", 2, 180);
        assert_eq!(wait.next_flush(), Some(250), "never past first + max_wait");
        add(&mut open, "a", 3, 120);
        assert_eq!(open.next_flush(), Some(120), "full: due now");
    }

    #[test]
    fn due_batches_come_earliest_first_and_close_removes_them() {
        let mut open = OpenBuffers::default();
        for (i, conversation) in ["c", "a", "d", "b"].iter().enumerate() {
            add(&mut open, conversation, i as i64, i as i64 * 10);
        }
        // "c" writes again and is now due last.
        add(&mut open, "c", 9, 50);
        assert_eq!(open.due(125, 10), [key("a"), key("d")]);
        assert_eq!(open.due(1_000, 2), [key("a"), key("d")]);
        assert_eq!(
            open.due(1_000, 10),
            [key("a"), key("d"), key("b"), key("c")]
        );
        assert_eq!(open.close(&[key("a"), key("c")]), 3);
        assert_eq!((open.len(), open.messages()), (2, 2));
        assert_eq!(open.due(1_000, 10), [key("d"), key("b")]);
    }

    #[test]
    fn a_batch_gives_its_messages_by_event_time_then_id() {
        let mut late = event(1);
        late.occurred_at = Some(20);
        let mut early = event(2);
        early.occurred_at = Some(10);
        let mut same_time = event(3);
        same_time.occurred_at = Some(10);
        let batch = Batch {
            first_at: 0,
            last_at: 0,
            flush_at: 0,
            events: vec![same_time, late, early],
        };
        let ids: Vec<i64> = batch.in_event_order().iter().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3, 1]);
    }
}
