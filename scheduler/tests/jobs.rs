//! Jobs end to end on the real databases (SQLite, the embedded default, PostgreSQL and MariaDB): the store,
//! the scheduler's runs, pause, disable, run now, one run at a time, exactly once among schedulers
//! sharing a database, and a lost scheduler's run taken over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use owl_model::Clock;
use owl_scheduler::{
    Job, JobChange, JobStore, NewJob, RunReport, RunRequestError, Schedule, Scheduler, SchedulerOptions,
    StoreError, Task, TaskType,
};
use owl_sql::testing::{TempDatabase, TempPostgres, services_skipped};
use serde_json::json;

/// 2026-12-03T10:00:00Z.
const T0: i64 = 1_796_292_000_000;

/// A task that counts its runs per job and reports them; it waits while `hold` is set.
#[derive(Default)]
struct Counting {
    runs: Mutex<HashMap<String, u64>>,
    hold: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
    fail: std::sync::atomic::AtomicBool,
}

impl Counting {
    fn count(&self, job: &str) -> u64 {
        self.runs.lock().unwrap().get(job).copied().unwrap_or(0)
    }
}

struct CountingTask(Arc<Counting>, TaskType);

impl Task for CountingTask {
    fn task_type(&self) -> TaskType {
        self.1
    }

    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>> {
        Box::pin(async move {
            let hold = self.0.hold.lock().unwrap().clone();
            if let Some(mut hold) = hold {
                while *hold.borrow() {
                    if hold.changed().await.is_err() {
                        break;
                    }
                }
            }
            let n = {
                let mut runs = self.0.runs.lock().unwrap();
                let n = runs.entry(job.id.clone()).or_default();
                *n += 1;
                *n
            };
            if self.0.fail.load(Ordering::Relaxed) {
                return Err("the disk is gone".to_string());
            }
            Ok(RunReport {
                files: 2,
                bytes: 4096,
                records: n as i64,
                detail: json!({ "partitions": ["2026-11-01"] }),
            })
        })
    }
}

fn new_job(name: &str, schedule: &str) -> NewJob {
    NewJob {
        name: name.to_string(),
        task_type: TaskType::Retention,
        schedule: schedule.parse().unwrap(),
        description: format!("{name} for the tests"),
        params: json!({}),
        builtin: false,
    }
}

fn scheduler(store: &JobStore, owner: &str, clock: &Clock, counting: &Arc<Counting>) -> Scheduler {
    Scheduler::new(
        store.clone(),
        owner,
        clock.clone(),
        vec![Arc::new(CountingTask(counting.clone(), TaskType::Retention))],
        SchedulerOptions {
            tick: Duration::from_millis(20),
            lease: Duration::from_secs(60),
        },
    )
}

async fn run_ticks(scheduler: &Scheduler) -> usize {
    let handles = scheduler.tick().await.unwrap();
    let n = handles.len();
    for handle in handles {
        handle.await.unwrap();
    }
    n
}

async fn sqlite(dir: &std::path::Path) -> JobStore {
    let url = format!("sqlite://{}?mode=rwc", dir.join("owl.db").display());
    JobStore::new(owl_sql::open(&url, 4).await.unwrap())
}

/// A store on a database of its own on a server (PostgreSQL or MariaDB).
async fn server(database: &TempDatabase) -> JobStore {
    JobStore::new(owl_sql::open(&database.url(), 4).await.unwrap())
}

/// The lifecycle of a job through the store and one scheduler.
async fn lifecycle(store: JobStore) {
    let clock = Clock::manual(T0);
    let counting = Arc::new(Counting::default());
    let scheduler = scheduler(&store, "node-a", &clock, &counting);

    // Created: first run on the schedule's next minute; names are unique.
    let job = store
        .insert(&new_job("retention", "* * * * *"), T0 + 1, "admin")
        .await
        .unwrap();
    assert_eq!(job.next_run_at, Some(T0 + 60_000));
    assert_eq!(job.status(T0), "active");
    assert!(matches!(
        store
            .insert(&new_job("retention", "* * * * *"), T0, "admin")
            .await,
        Err(StoreError::NameTaken(_))
    ));
    assert_eq!(run_ticks(&scheduler).await, 0, "nothing is due yet");

    // Due: runs once, reports, moves on.
    clock.advance(Duration::from_secs(60));
    assert_eq!(run_ticks(&scheduler).await, 1);
    assert_eq!(run_ticks(&scheduler).await, 0, "not twice");
    assert_eq!(counting.count(&job.id), 1);
    let after = store.get(&job.id).await.unwrap().unwrap();
    assert_eq!(after.next_run_at, Some(T0 + 120_000));
    assert_eq!(after.last_run_at, Some(T0 + 60_000));
    assert_eq!(after.last_outcome.as_deref(), Some("succeeded"));
    assert_eq!(after.lease_owner, None);
    let (runs, total) = store.runs(&job.id, 0, 10).await.unwrap();
    assert_eq!(total, 1);
    let run = &runs[0];
    assert_eq!(
        (run.status.as_str(), run.trigger.as_str()),
        ("succeeded", "schedule")
    );
    assert_eq!(
        (run.report.files, run.report.bytes, run.report.records),
        (2, 4096, 1)
    );
    assert_eq!(run.report.detail["partitions"][0], "2026-11-01");
    assert_eq!(run.duration_ms, Some(0));
    assert_eq!(run.runner.as_deref(), Some("node-a"));

    // Paused: the schedule goes on, the run is skipped.
    store
        .set_paused(&job.id, true, T0 + 61_000, "ops")
        .await
        .unwrap()
        .unwrap();
    clock.advance(Duration::from_secs(60));
    assert_eq!(run_ticks(&scheduler).await, 0);
    let paused = store.get(&job.id).await.unwrap().unwrap();
    assert_eq!(paused.status(clock.now_ms()), "paused");
    assert_eq!(paused.next_run_at, Some(T0 + 180_000), "skipped, not stuck");
    store
        .set_paused(&job.id, false, clock.now_ms(), "ops")
        .await
        .unwrap()
        .unwrap();

    // Disabled: no next run, never runs, not even when asked.
    let disabled = store
        .set_enabled(&job.id, false, clock.now_ms(), "ops")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (disabled.next_run_at, disabled.status(clock.now_ms())),
        (None, "disabled")
    );
    clock.advance(Duration::from_secs(600));
    assert_eq!(run_ticks(&scheduler).await, 0);
    assert!(matches!(
        store.request_run(&job.id, clock.now_ms()).await,
        Err(RunRequestError::Disabled(_))
    ));
    let enabled = store
        .set_enabled(&job.id, true, clock.now_ms(), "ops")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        enabled.next_run_at,
        Some(T0 + 780_000),
        "the schedule from now on"
    );

    // Run now: queued at once, one at a time, started by the next tick whatever the schedule.
    let queued = store.request_run(&job.id, clock.now_ms()).await.unwrap();
    assert_eq!(
        (queued.status.as_str(), queued.trigger.as_str()),
        ("queued", "manual")
    );
    assert!(matches!(
        store.request_run(&job.id, clock.now_ms()).await,
        Err(RunRequestError::Running(_))
    ));
    assert_eq!(run_ticks(&scheduler).await, 1);
    let done = store.run(&queued.id).await.unwrap().unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(counting.count(&job.id), 2);
    assert!(
        store.request_run(&job.id, clock.now_ms()).await.is_ok(),
        "free again"
    );
    assert_eq!(run_ticks(&scheduler).await, 1);

    // A failure is recorded with its reason.
    counting.fail.store(true, Ordering::Relaxed);
    store.request_run(&job.id, clock.now_ms()).await.unwrap();
    assert_eq!(run_ticks(&scheduler).await, 1);
    let (runs, total) = store.runs(&job.id, 0, 2).await.unwrap();
    assert_eq!((total, runs.len()), (4, 2), "newest first, paged");
    assert_eq!(runs[0].status, "failed");
    assert_eq!(runs[0].error.as_deref(), Some("the disk is gone"));
    assert_eq!(
        store.get(&job.id).await.unwrap().unwrap().last_outcome.as_deref(),
        Some("failed")
    );

    // The history keeps 30 days: a run finished after that drops the runs older than it.
    clock.advance(Duration::from_millis(owl_scheduler::RUN_HISTORY_MS as u64 + 1));
    counting.fail.store(false, Ordering::Relaxed);
    store.request_run(&job.id, clock.now_ms()).await.unwrap();
    assert_eq!(run_ticks(&scheduler).await, 1);
    let (runs, total) = store.runs(&job.id, 0, 10).await.unwrap();
    assert_eq!(total, 1, "{runs:?}");
    assert_eq!(runs[0].status, "succeeded");

    // Changed: a new schedule sets the next run from now; deleting removes the history too.
    let change = JobChange {
        schedule: Some("0 0 3 * * *".parse().unwrap()),
        description: Some("nightly".into()),
        ..JobChange::default()
    };
    let changed = store
        .update(&job.id, &change, clock.now_ms(), "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.schedule, "0 0 3 * * *");
    assert_eq!(changed.description, "nightly");
    assert_eq!(changed.updated_by, "admin");
    assert_eq!(
        changed.next_run_at,
        "0 0 3 * * *"
            .parse::<Schedule>()
            .unwrap()
            .next_after_ms(clock.now_ms())
    );
    assert!(store.delete(&job.id).await.unwrap());
    assert_eq!(store.get(&job.id).await.unwrap(), None);
    assert_eq!(store.runs(&job.id, 0, 10).await.unwrap().1, 0);
    assert!(!store.delete(&job.id).await.unwrap());
}

#[tokio::test]
async fn lifecycle_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn lifecycle_on_mariadb() {
    if services_skipped() {
        eprintln!("skipping MariaDB: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    let database = TempDatabase::mysql("owl_jobs_test").await;
    lifecycle(server(&database).await).await;
}

#[tokio::test]
async fn lifecycle_on_postgres() {
    if services_skipped() {
        eprintln!("skipping PostgreSQL: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    let database = TempPostgres::create("owl_jobs_test").await;
    lifecycle(server(&database).await).await;
}

/// Two schedulers on one database, each with its own pool (as two replicas), tick at once over
/// many due jobs: every run happens exactly once.
async fn exactly_once(open: impl Fn() -> BoxFuture<'static, JobStore>) {
    let (a, b) = (open().await, open().await);
    let clock = Clock::manual(T0);
    let counting = Arc::new(Counting::default());
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            a.insert(&new_job(&format!("job-{i}"), "* * * * *"), T0, "admin")
                .await
                .unwrap()
                .id,
        );
    }
    let (one, two) = (
        scheduler(&a, "node-a", &clock, &counting),
        scheduler(&b, "node-b", &clock, &counting),
    );
    let started = AtomicU64::new(0);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(60));
        let (x, y) = tokio::join!(run_ticks(&one), run_ticks(&two));
        started.fetch_add((x + y) as u64, Ordering::Relaxed);
    }
    assert_eq!(started.load(Ordering::Relaxed), 12 * 5);
    for id in &ids {
        assert_eq!(counting.count(id), 5, "job {id}");
        let (runs, total) = a.runs(id, 0, 10).await.unwrap();
        assert_eq!(total, 5);
        assert!(runs.iter().all(|r| r.status == "succeeded"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_run_each_job_once_on_sqlite() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    exactly_once(move || {
        let dir = dir.clone();
        Box::pin(async move { sqlite(dir.path()).await })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_run_each_job_once_on_postgres() {
    if services_skipped() {
        eprintln!("skipping PostgreSQL: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    let database = Arc::new(TempPostgres::create("owl_jobs_test").await);
    exactly_once(move || {
        let database = database.clone();
        Box::pin(async move { server(&database).await })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_run_each_job_once_on_mariadb() {
    if services_skipped() {
        eprintln!("skipping MariaDB: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    let database = Arc::new(TempDatabase::mysql("owl_jobs_test").await);
    exactly_once(move || {
        let database = database.clone();
        Box::pin(async move { server(&database).await })
    })
    .await;
}

/// A scheduler that stops in the middle of a run keeps the job until its lease lapses; then
/// another takes the job over and records the lost run as failed.
#[tokio::test]
async fn a_lost_run_is_taken_over_when_its_lease_lapses() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let clock = Clock::manual(T0);
    let job = store
        .insert(&new_job("retention", "* * * * *"), T0, "admin")
        .await
        .unwrap();
    let stuck = Arc::new(Counting::default());
    let (_release, hold) = tokio::sync::watch::channel(true);
    *stuck.hold.lock().unwrap() = Some(hold);
    let first = scheduler(&store, "node-a", &clock, &stuck);
    clock.advance(Duration::from_secs(60));
    let handles = first.tick().await.unwrap();
    assert_eq!(handles.len(), 1);
    // node-a dies with its run in flight: once the run is recorded as started.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store
        .runs(&job.id, 0, 1)
        .await
        .unwrap()
        .0
        .first()
        .map(|r| r.status.as_str())
        != Some("running")
    {
        assert!(std::time::Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for handle in handles {
        handle.abort();
    }
    let counting = Arc::new(Counting::default());
    let second = scheduler(&store, "node-b", &clock, &counting);
    clock.advance(Duration::from_secs(60));
    assert_eq!(run_ticks(&second).await, 0, "the lease still holds");
    assert_eq!(
        store.get(&job.id).await.unwrap().unwrap().status(clock.now_ms()),
        "running"
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(run_ticks(&second).await, 1, "taken over once the lease lapsed");
    let (runs, _) = store.runs(&job.id, 0, 10).await.unwrap();
    let statuses: Vec<&str> = runs.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["succeeded", "failed"]);
    assert_eq!(runs[1].runner.as_deref(), Some("node-a"));
    assert!(runs[1].error.as_deref().unwrap().contains("scheduler stopped"));
    assert_eq!(counting.count(&job.id), 1);
}
