//! Two `owl collector` processes on one PostgreSQL, and on one MariaDB: every due run of a job
//! happens exactly once, whichever of the two claims it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use owl_scheduler::{JobStore, NewJob, TaskType};
use owl_sql::testing::{TempDatabase, services_skipped};

fn collector(data: &std::path::Path, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_owl"))
        .args(["collector", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("OWL_DATABASE_URL", url)
        .env("OWL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start owl collector")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_postgres_run_each_due_run_once() {
    if services_skipped() {
        eprintln!("skipping PostgreSQL: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    two_collectors_run_each_due_run_once(TempDatabase::create("owl_replicas_test").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_mariadb_run_each_due_run_once() {
    if services_skipped() {
        eprintln!("skipping MariaDB: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    two_collectors_run_each_due_run_once(TempDatabase::mysql("owl_replicas_test").await).await;
}

async fn two_collectors_run_each_due_run_once(database: TempDatabase) {
    let url = database.url();
    let store = JobStore::new(owl_sql::open(&url, 2).await.unwrap());
    let job = store
        .insert(
            &NewJob {
                name: "every second".into(),
                task_type: TaskType::AuditRetention,
                schedule: "* * * * * *".parse().unwrap(),
                description: "a run a second, for two schedulers to race for".into(),
                params: serde_json::json!({}),
                builtin: false,
            },
            chrono::Utc::now().timestamp_millis(),
            "test",
        )
        .await
        .unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut children = [collector(a.path(), &url), collector(b.path(), &url)];

    // Until both have run the job (or long enough that one alone would have run it many times).
    let started = Instant::now();
    loop {
        let (runs, _) = store.runs(&job.id, 0, 200).await.unwrap();
        let runners: std::collections::BTreeSet<_> = runs.iter().filter_map(|r| r.runner.clone()).collect();
        if (runners.len() == 2 && runs.len() >= 6) || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (runs, total) = store.runs(&job.id, 0, 200).await.unwrap();
    assert!(total >= 6, "the job ran {total} times");
    // One run per second slot: a run claimed twice would start twice within one second.
    let mut seconds: Vec<i64> = runs
        .iter()
        .filter_map(|r| r.started_at)
        .map(|ms| ms / 1000)
        .collect();
    let all = seconds.len();
    seconds.sort_unstable();
    seconds.dedup();
    assert_eq!(seconds.len(), all, "two runs in one second: {runs:?}");
    assert!(
        runs.iter()
            .all(|r| r.status == "succeeded" || r.status == "running"),
        "{runs:?}"
    );
    let runners: std::collections::BTreeSet<_> = runs.iter().filter_map(|r| r.runner.clone()).collect();
    assert_eq!(runners.len(), 2, "both collectors took part: {runners:?}");
    // Both created the built-in jobs at start, once.
    let names: Vec<String> = store.list().await.unwrap().into_iter().map(|j| j.name).collect();
    assert_eq!(
        names,
        [
            "audit_retention",
            "disk_check",
            "every second",
            "merge_partitions",
            "retention"
        ]
    );
}
