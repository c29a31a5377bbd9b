//! Owl's scheduled jobs (the platform API's `/api/jobs`): Owl's own maintenance as jobs ops can
//! see and steer.
//!
//! - [`Schedule`]: cron in UTC, 5 fields or 6 with seconds first;
//! - [`JobStore`]: jobs and their runs in Owl's database, through `owl-sql`;
//! - [`Scheduler`]: each tick starts the due runs of the jobs whose [`Task`] it has, holding the
//!   job's lease so that among replicas on one database each run happens exactly once; a job
//!   that needs the index runs where the index is.
//!
//! Disabled jobs never run; paused ones keep their schedule and skip their runs until resumed; a
//! run asked for (`run now`) is queued and started by the next tick of a scheduler that can do
//! it; one run of a job at a time.

mod model;
mod runner;
mod schedule;
mod store;

pub use model::{Job, JobRun, RunReport, RunTrigger, TaskType, UnknownTaskType};
pub use runner::{Scheduler, SchedulerOptions, Task};
pub use schedule::{Schedule, ScheduleError};
pub use store::{JobChange, JobStore, NewJob, RUN_HISTORY_MS, RunRequestError, StoreError};
