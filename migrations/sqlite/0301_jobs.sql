-- Scheduled jobs (the platform API's `/api/jobs`): Owl's own maintenance (retention, audit
-- retention, cleanup, merging sealed partitions, disk checks, warming the analytics cache) as jobs
-- ops can see and steer, and the history of their runs. Times are epoch milliseconds (UTC);
-- params and details are JSON text. The PostgreSQL folder holds the same schema.
--
-- A run is claimed by compare-and-set on its job's lease (`lease_owner`, `lease_until`), so among
-- several schedulers on one database exactly one runs it; a lease that lapsed (its scheduler died)
-- is taken over. At most one run of a job is queued or running at a time.
CREATE TABLE jobs (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    task_type    TEXT    NOT NULL,
    schedule     TEXT    NOT NULL,
    description  TEXT    NOT NULL DEFAULT '',
    params       TEXT    NOT NULL DEFAULT '{}',
    builtin      INTEGER NOT NULL DEFAULT 0,
    enabled      INTEGER NOT NULL DEFAULT 1,
    paused       INTEGER NOT NULL DEFAULT 0,
    next_run_at  INTEGER,
    last_run_at  INTEGER,
    last_outcome TEXT,
    lease_owner  TEXT,
    lease_until  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    updated_by   TEXT    NOT NULL DEFAULT 'system'
);

-- trigger: schedule or manual. status: queued (asked for, not started), running, succeeded,
-- failed. What a run did: files, bytes and records it touched, and a detail object.
CREATE TABLE job_runs (
    id          TEXT    PRIMARY KEY,
    job_id      TEXT    NOT NULL,
    run_trigger TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    queued_at   INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    duration_ms INTEGER,
    error       TEXT,
    files       INTEGER NOT NULL DEFAULT 0,
    bytes       INTEGER NOT NULL DEFAULT 0,
    records     INTEGER NOT NULL DEFAULT 0,
    detail      TEXT    NOT NULL DEFAULT '{}',
    runner      TEXT
);
CREATE INDEX job_runs_by_job ON job_runs (job_id, queued_at);
CREATE UNIQUE INDEX job_runs_one_active ON job_runs (job_id) WHERE status IN ('queued', 'running');
