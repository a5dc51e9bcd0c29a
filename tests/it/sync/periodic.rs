//! The periodic sync of `serve`: after the startup sync it syncs every `sync.interval`, so a
//! webhook Kapso paused or deleted while the server runs is back within one interval. Runs the
//! background sync against the simulated Kapso on loopback, on a manual clock that the test
//! moves by the interval; each run is awaited on the sync's own state, never by sleeping.

use std::sync::Arc;
use std::time::Duration;

use switchboard::clock::{Clock, ManualTime};
use switchboard::kapso::KapsoClient;
use switchboard::metrics::Metrics;
use switchboard::sync::{run_startup_sync, SyncReporting, SyncState, SyncStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{config, hook_at, sim, SUPPORT_URL, WEBHOOKS};

const INTERVAL: Duration = Duration::from_secs(5 * 60);

struct Running {
    time: Arc<ManualTime>,
    state: watch::Receiver<SyncState>,
    metrics: Arc<Metrics>,
    _stop: tokio_util::sync::DropGuard,
}

impl Running {
    fn start(config: switchboard::Config) -> Running {
        let time = ManualTime::starting_at(1_000_000);
        let metrics = Arc::new(Metrics::new());
        let (state, receiver) = watch::channel(SyncState::new(SyncStatus::Pending));
        let kapso = KapsoClient::new(&config.kapso).unwrap();
        let reporting = SyncReporting {
            state,
            metrics: metrics.clone(),
            clock: Clock::Manual(time.clone()),
        };
        let stop = CancellationToken::new();
        tokio::spawn(run_startup_sync(config, kapso, reporting, stop.clone()));
        Running {
            time,
            state: receiver,
            metrics,
            _stop: stop.drop_guard(),
        }
    }

    /// The state once `runs` runs have finished.
    async fn after_run(&mut self, runs: u64) -> SyncState {
        let state = tokio::time::timeout(
            Duration::from_secs(15),
            self.state.wait_for(|s| s.runs >= runs),
        )
        .await
        .unwrap_or_else(|_| panic!("sync run {runs} did not finish"))
        .unwrap()
        .clone();
        state
    }
}

fn with_interval(webhooks: &str) -> String {
    format!("{webhooks}\n[sync]\ninterval = \"5m\"\n")
}

fn support_id(sim: &switchboard::kapso_sim::SimulatedKapso) -> String {
    let hooks = sim.webhooks();
    let support = hook_at(&hooks, SUPPORT_URL);
    assert_eq!(support.len(), 1, "{hooks:?}");
    support[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_webhook_kapso_pauses_while_serving_is_active_again_after_one_interval() {
    let sim = sim().await;
    let mut running = Running::start(config(&sim, &with_interval(WEBHOOKS)));
    let first = running.after_run(1).await;
    assert_eq!(first.status, SyncStatus::Ok);
    let id = support_id(&sim);

    // Kapso pauses it (a stretch of failed deliveries, say).
    assert!(sim.set_webhook_active(&id, false));
    running.time.advance(INTERVAL);
    let second = running.after_run(2).await;

    assert_eq!(hook_at(&sim.webhooks(), SUPPORT_URL)[0]["active"], true);
    assert_eq!(second.status, SyncStatus::Ok);
    let last = second.last.unwrap();
    assert_eq!(last.error, None);
    assert_eq!(last.changes.get("reactivated"), Some(&1), "{last:?}");
    let metrics = running.metrics.render();
    assert!(
        metrics.contains("switchboard_webhook_sync_changes_total{action=\"reactivated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_webhook_sync_runs_total{result=\"ok\"} 2"),
        "{metrics}"
    );

    // A round with nothing to do changes nothing and says so.
    running.time.advance(INTERVAL);
    let third = running.after_run(3).await;
    assert!(third.last.unwrap().changes.is_empty());
}

#[tokio::test]
async fn a_webhook_deleted_on_kapso_while_serving_is_created_again_after_one_interval() {
    let sim = sim().await;
    let mut running = Running::start(config(&sim, &with_interval(WEBHOOKS)));
    running.after_run(1).await;
    let id = support_id(&sim);
    let kapso = KapsoClient::new(&sim.kapso_config()).unwrap();
    kapso
        .delete_webhook(Some(crate::payloads::PHONE_NUMBER_ID), &id)
        .await
        .unwrap();
    assert!(hook_at(&sim.webhooks(), SUPPORT_URL).is_empty());

    running.time.advance(INTERVAL);
    let second = running.after_run(2).await;

    let again = support_id(&sim);
    assert_ne!(again, id);
    assert_eq!(hook_at(&sim.webhooks(), SUPPORT_URL)[0]["active"], true);
    assert_eq!(second.last.unwrap().changes.get("created"), Some(&1));
}

#[tokio::test]
async fn with_the_interval_off_the_sync_runs_once() {
    let sim = sim().await;
    let text = format!("{WEBHOOKS}\n[sync]\ninterval = \"off\"\n");
    let mut running = Running::start(config(&sim, &text));
    running.after_run(1).await;
    let id = support_id(&sim);
    assert!(sim.set_webhook_active(&id, false));
    let before = sim.requests().len();

    running.time.advance(INTERVAL * 10);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }

    assert_eq!(sim.requests().len(), before, "no sync after the first");
    assert_eq!(running.state.borrow().runs, 1);
}

#[tokio::test]
async fn a_failed_round_is_reported_with_the_last_success_kept() {
    let sim = sim().await;
    let mut running = Running::start(config(&sim, &with_interval(WEBHOOKS)));
    let first = running.after_run(1).await;
    let succeeded_at = first.last.unwrap().at_ms;
    // Kapso becomes unreachable while the server runs.
    sim.shutdown().await;

    running.time.advance(INTERVAL);
    let second = running.after_run(2).await;

    assert!(
        matches!(&second.status, SyncStatus::Retrying(e) if e.contains("listing the webhooks")),
        "{:?}",
        second.status
    );
    let last = second.last.unwrap();
    assert!(last.error.is_some());
    assert_eq!(last.last_success_ms, Some(succeeded_at));
    let metrics = running.metrics.render();
    assert!(
        metrics.contains("switchboard_webhook_sync_runs_total{result=\"failed\"} 1"),
        "{metrics}"
    );
}
