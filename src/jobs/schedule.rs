//! The in-memory schedule of unfinished jobs: which job runs next, in O(log n) whatever the
//! backlog. Pure: no I/O, no clock. The durable copy of every job is the `jobs` table; this is
//! rebuilt from it at startup.
//!
//! Jobs that share an ordering key (one route and conversation) form a lane and run one at a
//! time in `(order_ts, order_seq)` order: only a lane's first job may run, and only while no job
//! of the lane is running. A job that arrives late with an earlier timestamp becomes the lane's
//! head and runs as soon as the running one ends. Jobs without a key run independently.

use std::collections::{BTreeSet, HashMap};

/// The order in which jobs become due: `(run_at, order_ts, order_seq, id)`.
type DueKey = (i64, i64, i64, i64);
/// The order inside a lane: `(order_ts, order_seq, id)`.
type LaneKey = (i64, i64, i64);

/// What the schedule needs to know of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub id: i64,
    pub ordering_key: Option<String>,
    pub order_ts: i64,
    pub order_seq: i64,
    pub run_at: i64,
}

impl Slot {
    fn due_key(&self) -> DueKey {
        (self.run_at, self.order_ts, self.order_seq, self.id)
    }

    fn lane_key(&self) -> LaneKey {
        (self.order_ts, self.order_seq, self.id)
    }
}

#[derive(Debug, Default)]
struct Lane {
    /// Unfinished jobs of the lane, running one included.
    jobs: BTreeSet<LaneKey>,
    /// The lane's running job, if any.
    running: Option<i64>,
}

/// Unfinished jobs, the lanes they form and the set of jobs allowed to run.
#[derive(Debug, Default)]
pub struct Schedule {
    slots: HashMap<i64, Slot>,
    lanes: HashMap<String, Lane>,
    /// Jobs allowed to run once their `run_at` has come: lane heads whose lane is idle, and
    /// jobs without a lane that are not running.
    eligible: BTreeSet<DueKey>,
    running: usize,
}

impl Schedule {
    pub fn new() -> Schedule {
        Schedule::default()
    }

    /// Unfinished jobs known (queued or running).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Jobs currently taken by a worker.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Jobs waiting: due later, waiting for their lane, or due and not yet taken.
    pub fn queued(&self) -> usize {
        self.slots.len() - self.running
    }

    pub fn contains(&self, id: i64) -> bool {
        self.slots.contains_key(&id)
    }

    /// Adds a queued job. A job already known is left as it is (returns false).
    pub fn insert(&mut self, slot: Slot) -> bool {
        if self.slots.contains_key(&slot.id) {
            return false;
        }
        match slot.ordering_key.clone() {
            None => {
                self.eligible.insert(slot.due_key());
                self.slots.insert(slot.id, slot);
            }
            Some(key) => {
                let lane_key = slot.lane_key();
                self.slots.insert(slot.id, slot);
                let lane = self.lanes.entry(key.clone()).or_default();
                let old_head = lane.jobs.first().copied();
                lane.jobs.insert(lane_key);
                if lane.running.is_none() && old_head != lane.jobs.first().copied() {
                    if let Some((_, _, old)) = old_head {
                        self.make_ineligible(old);
                    }
                    self.make_eligible(lane_key.2);
                }
            }
        }
        true
    }

    /// Takes the first job allowed to run whose `run_at` is at or before `now`.
    pub fn take_due(&mut self, now: i64) -> Option<i64> {
        let first = *self.eligible.first()?;
        if first.0 > now {
            return None;
        }
        self.eligible.remove(&first);
        let id = first.3;
        if let Some(key) = self.slots.get(&id).and_then(|s| s.ordering_key.clone()) {
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.running = Some(id);
            }
        }
        self.running += 1;
        Some(id)
    }

    /// When the next job allowed to run becomes due (it may already be).
    pub fn next_due(&self) -> Option<i64> {
        self.eligible.first().map(|k| k.0)
    }

    /// A taken job ended for good (done or dead): its lane's next job may run.
    pub fn complete(&mut self, id: i64) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        self.running = self.running.saturating_sub(1);
        if let Some(key) = slot.ordering_key.clone() {
            let mut emptied = false;
            let mut next = None;
            if let Some(lane) = self.lanes.get_mut(&key) {
                lane.jobs.remove(&slot.lane_key());
                if lane.running == Some(id) {
                    lane.running = None;
                }
                emptied = lane.jobs.is_empty();
                if lane.running.is_none() {
                    next = lane.jobs.first().map(|k| k.2);
                }
            }
            if emptied {
                self.lanes.remove(&key);
            }
            if let Some(next) = next {
                self.make_eligible(next);
            }
        }
    }

    /// A taken job goes back to the queue, to run at `run_at` (a retry). Its lane stays
    /// blocked behind it: later jobs of the conversation wait for it.
    pub fn requeue(&mut self, id: i64, run_at: i64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.run_at = run_at;
        self.running = self.running.saturating_sub(1);
        let mut head = Some(id);
        if let Some(key) = slot.ordering_key.clone() {
            if let Some(lane) = self.lanes.get_mut(&key) {
                if lane.running == Some(id) {
                    lane.running = None;
                }
                // An earlier job may have arrived meanwhile: the head runs first.
                head = lane.jobs.first().map(|k| k.2);
            }
        }
        if let Some(head) = head {
            self.make_eligible(head);
        }
    }

    /// Moves a waiting job's due time (a manual retry). Running jobs are left alone.
    pub fn reschedule(&mut self, id: i64, run_at: i64) {
        let Some(slot) = self.slots.get(&id) else {
            return;
        };
        let old = slot.due_key();
        let was_eligible = self.eligible.remove(&old);
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.run_at = run_at;
            if was_eligible {
                let key = slot.due_key();
                self.eligible.insert(key);
            }
        }
    }

    /// Whether job `id` is taken by a worker.
    pub fn is_running(&self, id: i64) -> bool {
        let Some(slot) = self.slots.get(&id) else {
            return false;
        };
        match &slot.ordering_key {
            // A job without a lane waits in `eligible` until it is taken.
            None => !self.eligible.contains(&slot.due_key()),
            Some(key) => self.lanes.get(key).is_some_and(|l| l.running == Some(id)),
        }
    }

    /// Takes a waiting job out of the schedule (its route is paused) and returns it; its
    /// lane's next job may then run. A running job is left alone (`None`).
    pub fn remove_waiting(&mut self, id: i64) -> Option<Slot> {
        if self.is_running(id) {
            return None;
        }
        let slot = self.slots.remove(&id)?;
        self.eligible.remove(&slot.due_key());
        if let Some(key) = &slot.ordering_key {
            let mut emptied = false;
            let mut next = None;
            if let Some(lane) = self.lanes.get_mut(key) {
                let was_head = lane.jobs.first() == Some(&slot.lane_key());
                lane.jobs.remove(&slot.lane_key());
                emptied = lane.jobs.is_empty();
                if was_head && lane.running.is_none() {
                    next = lane.jobs.first().map(|k| k.2);
                }
            }
            if emptied {
                self.lanes.remove(key);
            }
            if let Some(next) = next {
                self.make_eligible(next);
            }
        }
        Some(slot)
    }

    fn make_eligible(&mut self, id: i64) {
        if let Some(slot) = self.slots.get(&id) {
            self.eligible.insert(slot.due_key());
        }
    }

    fn make_ineligible(&mut self, id: i64) {
        if let Some(slot) = self.slots.get(&id) {
            self.eligible.remove(&slot.due_key());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(id: i64, key: Option<&str>, order_ts: i64, run_at: i64) -> Slot {
        Slot {
            id,
            ordering_key: key.map(str::to_owned),
            order_ts,
            order_seq: id,
            run_at,
        }
    }

    fn drain(schedule: &mut Schedule, now: i64) -> Vec<i64> {
        std::iter::from_fn(|| schedule.take_due(now)).collect()
    }

    #[test]
    fn a_lane_runs_one_job_at_a_time_in_event_order() {
        let mut s = Schedule::new();
        s.insert(slot(1, Some("c"), 20, 0));
        s.insert(slot(2, Some("c"), 10, 0)); // earlier event, arrived later
        s.insert(slot(3, Some("d"), 5, 0));
        assert_eq!(drain(&mut s, 0), vec![3, 2]);
        s.complete(2);
        assert_eq!(drain(&mut s, 0), vec![1]);
        s.complete(1);
        s.complete(3);
        assert!(s.is_empty());
        assert_eq!(s.running(), 0);
    }

    #[test]
    fn a_late_earlier_job_waits_for_the_running_one_then_goes_first() {
        let mut s = Schedule::new();
        s.insert(slot(1, Some("c"), 20, 0));
        s.insert(slot(2, Some("c"), 30, 0));
        assert_eq!(s.take_due(0), Some(1));
        s.insert(slot(3, Some("c"), 10, 0));
        assert_eq!(s.take_due(0), None, "the lane is busy");
        s.complete(1);
        assert_eq!(drain(&mut s, 0), vec![3]);
        s.complete(3);
        assert_eq!(drain(&mut s, 0), vec![2]);
    }

    #[test]
    fn a_retried_job_keeps_its_lane_blocked_until_it_is_due() {
        let mut s = Schedule::new();
        s.insert(slot(1, Some("c"), 10, 0));
        s.insert(slot(2, Some("c"), 20, 0));
        s.insert(slot(3, None, 30, 0));
        assert_eq!(s.take_due(0), Some(1));
        s.requeue(1, 500);
        assert_eq!(drain(&mut s, 100), vec![3], "job 2 waits behind the retry");
        assert_eq!(s.next_due(), Some(500));
        assert_eq!(drain(&mut s, 500), vec![1]);
        s.complete(1);
        assert_eq!(drain(&mut s, 500), vec![2]);
    }

    #[test]
    fn jobs_become_due_at_their_run_at_in_order() {
        let mut s = Schedule::new();
        s.insert(slot(1, None, 0, 300));
        s.insert(slot(2, None, 0, 100));
        s.insert(slot(3, Some("a"), 0, 200));
        assert_eq!(s.next_due(), Some(100));
        assert_eq!(drain(&mut s, 99), Vec::<i64>::new());
        assert_eq!(drain(&mut s, 250), vec![2, 3]);
        assert_eq!(drain(&mut s, 300), vec![1]);
        assert_eq!((s.running(), s.queued()), (3, 0));
    }

    #[test]
    fn reschedule_moves_a_waiting_job_and_duplicates_are_ignored() {
        let mut s = Schedule::new();
        assert!(s.insert(slot(1, Some("a"), 0, 10_000)));
        assert!(!s.insert(slot(1, Some("a"), 0, 0)));
        s.reschedule(1, 5);
        assert_eq!(drain(&mut s, 5), vec![1]);
    }

    #[test]
    fn a_waiting_job_is_taken_out_and_its_lane_goes_on_but_a_running_one_stays() {
        let mut s = Schedule::new();
        s.insert(slot(1, Some("c"), 10, 0));
        s.insert(slot(2, Some("c"), 20, 0));
        s.insert(slot(3, None, 30, 0));
        s.insert(slot(4, None, 40, 0));
        assert_eq!(s.take_due(0), Some(1));
        assert_eq!(s.take_due(0), Some(3));
        assert!(s.is_running(1) && s.is_running(3) && !s.is_running(4));
        assert_eq!(s.remove_waiting(1), None, "running");
        assert_eq!(s.remove_waiting(3), None, "running");
        assert_eq!(s.remove_waiting(2).map(|s| s.id), Some(2));
        assert_eq!(s.remove_waiting(4).map(|s| s.id), Some(4));
        assert_eq!((s.len(), s.running(), s.queued()), (2, 2, 0));
        s.complete(1);
        s.complete(3);
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);

        s.insert(slot(5, Some("d"), 10, 0));
        s.insert(slot(6, Some("d"), 20, 0));
        s.remove_waiting(5);
        assert_eq!(
            drain(&mut s, 0),
            vec![6],
            "the lane's next job is its head now"
        );
    }

    #[test]
    fn counts_follow_the_jobs() {
        let mut s = Schedule::new();
        for id in 0..10 {
            s.insert(slot(id, Some(&format!("c{}", id % 3)), id, 0));
        }
        assert_eq!((s.len(), s.queued(), s.running()), (10, 10, 0));
        let taken = drain(&mut s, 0);
        assert_eq!(taken.len(), 3, "one per lane");
        assert_eq!((s.queued(), s.running()), (7, 3));
        for id in taken {
            s.complete(id);
        }
        assert_eq!((s.len(), s.running()), (7, 0));
    }
}
