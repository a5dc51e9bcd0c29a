//! The jobs of paused routes, held out of the schedule until their route is resumed. Pure: no
//! I/O. A parked job is never looked at by a claim, so a paused route costs the workers
//! nothing, however many of its jobs wait; resuming hands them back to the schedule, which
//! runs them in their original order (their lanes and due times are kept).

use std::collections::{BTreeMap, HashMap};

use super::store::UnfinishedJob;

#[derive(Debug, Default)]
pub struct Parked {
    /// Every paused route, with its waiting jobs by id.
    routes: HashMap<String, BTreeMap<i64, UnfinishedJob>>,
    jobs: usize,
}

impl Parked {
    /// Whether `route` is paused (cheap while no route is).
    pub fn is_paused(&self, route: &str) -> bool {
        !self.routes.is_empty() && self.routes.contains_key(route)
    }

    /// Paused routes.
    pub fn routes(&self) -> usize {
        self.routes.len()
    }

    /// The names of the paused routes, sorted.
    pub fn paused_routes(&self) -> Vec<String> {
        let mut names: Vec<String> = self.routes.keys().cloned().collect();
        names.sort();
        names
    }

    /// Jobs held.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// Whether job `id` of `route` is held.
    pub fn contains(&self, route: &str, id: i64) -> bool {
        self.routes
            .get(route)
            .is_some_and(|jobs| jobs.contains_key(&id))
    }

    /// Pauses `route`; false when it already was.
    pub fn pause(&mut self, route: &str) -> bool {
        if self.routes.contains_key(route) {
            return false;
        }
        self.routes.insert(route.to_owned(), BTreeMap::new());
        true
    }

    /// Holds `job` (its route must be paused: else it is handed back, `Some`). A job held already is
    /// replaced (a manual retry gives it a new budget). Its events are dropped: the worker
    /// reads them when it runs, so a long pause costs table rows, not memory.
    pub fn park(&mut self, mut job: UnfinishedJob) -> Option<UnfinishedJob> {
        if self.routes.is_empty() {
            // No route is paused (the usual case): not even a hash of the route's name.
            return Some(job);
        }
        let Some(jobs) = self.routes.get_mut(&job.job.route) else {
            return Some(job);
        };
        job.job.events = None;
        if jobs.insert(job.job.id, job).is_none() {
            self.jobs += 1;
        }
        None
    }

    /// Resumes `route`: its held jobs, in id order (`None` when it was not paused).
    pub fn resume(&mut self, route: &str) -> Option<Vec<UnfinishedJob>> {
        let jobs = self.routes.remove(route)?;
        self.jobs -= jobs.len();
        Some(jobs.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::ClaimedJob;

    fn job(id: i64, route: &str) -> UnfinishedJob {
        UnfinishedJob {
            job: ClaimedJob {
                id,
                route: route.to_owned(),
                handler: "reply".into(),
                webhook: "support".into(),
                event_type: "whatsapp.message.received".into(),
                event_ids: "[1]".into(),
                attempts: 0,
                max_attempts: 5,
                created_at: 0,
                fresh: true,
                events: Some(Vec::new().into()),
            },
            ordering_key: None,
            order_ts: id,
            order_seq: id,
            run_at: 0,
        }
    }

    #[test]
    fn only_jobs_of_paused_routes_are_held_and_come_back_in_order() {
        let mut parked = Parked::default();
        assert!(!parked.is_paused("ack"));
        assert!(
            parked.park(job(1, "ack")).is_some(),
            "not paused: handed back"
        );
        assert!(parked.pause("ack"));
        assert!(!parked.pause("ack"), "idempotent");
        for id in [3, 1, 2] {
            assert!(parked.park(job(id, "ack")).is_none());
        }
        assert!(
            parked.park(job(2, "ack")).is_none(),
            "a retried job replaces itself"
        );
        assert!(parked.park(job(9, "other")).is_some());
        assert_eq!((parked.routes(), parked.jobs()), (1, 3));
        assert!(parked.contains("ack", 3) && !parked.contains("other", 9));
        let back = parked.resume("ack").unwrap();
        let ids: Vec<i64> = back.iter().map(|j| j.job.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(
            back.iter().all(|j| j.job.events.is_none()),
            "events dropped"
        );
        assert_eq!((parked.routes(), parked.jobs()), (0, 0));
        assert!(parked.resume("ack").is_none());
    }
}
