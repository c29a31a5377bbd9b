//! The scheduler: every tick it starts the due runs of the jobs whose task it can do, each on its
//! own task, holding the job's lease (renewed while the run lasts) so that no other scheduler
//! starts it too. A scheduler that dies leaves a lease that lapses; the next one takes over and
//! records the lost run as failed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use owl_model::Clock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::{Job, RunReport, TaskType};
use crate::schedule::Schedule;
use crate::store::{JobStore, StoreError};

/// What a job does, for one task type.
pub trait Task: Send + Sync {
    /// The type it serves.
    fn task_type(&self) -> TaskType;

    /// Runs `job` once: what it did, or why it failed.
    fn run<'a>(&'a self, job: &'a Job) -> BoxFuture<'a, Result<RunReport, String>>;
}

/// How often the scheduler looks, and how long a lease lasts between renewals.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerOptions {
    /// Between two looks at what is due.
    pub tick: Duration,
    /// How long a run's lease lasts; renewed every third of it while the run goes on.
    pub lease: Duration,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            tick: Duration::from_secs(1),
            lease: Duration::from_secs(60),
        }
    }
}

/// Runs due jobs. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    store: JobStore,
    tasks: Arc<HashMap<TaskType, Arc<dyn Task>>>,
    owner: String,
    clock: Clock,
    options: SchedulerOptions,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("owner", &self.owner)
            .field("tasks", &self.tasks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Scheduler {
    /// A scheduler named `owner` (unique among the replicas: host and process) for `tasks`.
    pub fn new(
        store: JobStore,
        owner: impl Into<String>,
        clock: Clock,
        tasks: Vec<Arc<dyn Task>>,
        options: SchedulerOptions,
    ) -> Scheduler {
        let tasks = tasks.into_iter().map(|t| (t.task_type(), t)).collect();
        Scheduler {
            store,
            tasks: Arc::new(tasks),
            owner: owner.into(),
            clock,
            options,
        }
    }

    /// The store.
    pub fn store(&self) -> &JobStore {
        &self.store
    }

    /// Looks once: starts every run that is due or asked for and that this scheduler can do, and
    /// returns their tasks. Paused jobs have their due run skipped.
    pub async fn tick(&self) -> Result<Vec<JoinHandle<()>>, StoreError> {
        let now = self.clock.now_ms();
        let until = now + self.options.lease.as_millis() as i64;
        let mut started = Vec::new();
        for run in self.store.queued().await? {
            let Some(job) = self.store.get(&run.job_id).await? else {
                continue;
            };
            let Some(task) = self.tasks.get(&job.task_type).cloned() else {
                continue;
            };
            if self.store.claim(&job.id, &self.owner, now, until, None).await? {
                started.push(self.spawn_run(job, task));
            }
        }
        for job in self.store.due(now).await? {
            let Some(task) = self.tasks.get(&job.task_type).cloned() else {
                continue;
            };
            let Some(due) = job.next_run_at else { continue };
            let next = job
                .schedule
                .parse::<Schedule>()
                .ok()
                .and_then(|s| s.next_after_ms(now));
            if job.paused {
                if self.store.skip(&job, next).await? {
                    tracing::info!(job = %job.name, "paused job: its run is skipped");
                }
                continue;
            }
            if self
                .store
                .claim(&job.id, &self.owner, now, until, Some((due, next)))
                .await?
            {
                started.push(self.spawn_run(job, task));
            }
        }
        Ok(started)
    }

    /// Looks every tick until `shutdown`; runs in flight finish on their own.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.tick().await {
                    tracing::warn!(%error, "the scheduler could not read the jobs; trying again");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(self.options.tick) => {}
                }
            }
        })
    }

    fn spawn_run(&self, job: Job, task: Arc<dyn Task>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let name = job.name.clone();
            if let Err(error) = this.execute(job, task).await {
                tracing::error!(job = %name, %error, "a job run could not be recorded");
            }
        })
    }

    async fn execute(&self, job: Job, task: Arc<dyn Task>) -> Result<(), StoreError> {
        let run = self
            .store
            .start(&job.id, &self.owner, self.clock.now_ms())
            .await?;
        tracing::info!(job = %job.name, run = %run.id, trigger = run.trigger.as_str(), "job run started");
        let _renewal = {
            let (store, id, owner, clock) = (
                self.store.clone(),
                job.id.clone(),
                self.owner.clone(),
                self.clock.clone(),
            );
            let lease = self.options.lease;
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let until = clock.now_ms() + lease.as_millis() as i64;
                    if let Err(error) = store.renew(&id, &owner, until).await {
                        tracing::warn!(%error, "could not renew a job's lease");
                    }
                }
            }))
        };
        let outcome = task.run(&job).await;
        match &outcome {
            Ok(report) => {
                tracing::info!(job = %job.name, run = %run.id, records = report.records, "job run succeeded")
            }
            Err(error) => tracing::warn!(job = %job.name, run = %run.id, %error, "job run failed"),
        }
        let outcome = outcome.as_ref().map_err(String::as_str);
        self.store
            .finish(&run, &self.owner, self.clock.now_ms(), outcome)
            .await
    }
}

/// Stops the lease renewal with the run, however the run ends (finished, failed, dropped).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
