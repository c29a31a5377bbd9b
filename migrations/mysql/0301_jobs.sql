-- Scheduled jobs (the platform API's `/api/jobs`): Owl's own maintenance (retention, audit
-- retention, cleanup, merging sealed partitions, disk checks, warming the analytics cache) as jobs
-- ops can see and steer, and the history of their runs. Times are epoch milliseconds (UTC);
-- params and details are JSON text. The sqlite and postgres folders hold the same schema.
--
-- A run is claimed by compare-and-set on its job's lease (`lease_owner`, `lease_until`), so among
-- several schedulers on one database exactly one runs it; a lease that lapsed (its scheduler died)
-- is taken over. At most one run of a job is queued or running at a time.
CREATE TABLE jobs (
    id           VARCHAR(64)  NOT NULL PRIMARY KEY,
    name         VARCHAR(255) NOT NULL UNIQUE,
    task_type    TEXT         NOT NULL,
    schedule     TEXT         NOT NULL,
    description  TEXT         NOT NULL DEFAULT '',
    params       MEDIUMTEXT   NOT NULL DEFAULT '{}',
    builtin      BIGINT       NOT NULL DEFAULT 0,
    enabled      BIGINT       NOT NULL DEFAULT 1,
    paused       BIGINT       NOT NULL DEFAULT 0,
    next_run_at  BIGINT       NULL,
    last_run_at  BIGINT       NULL,
    last_outcome TEXT         NULL,
    lease_owner  TEXT         NULL,
    lease_until  BIGINT       NULL,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL,
    updated_by   TEXT         NOT NULL DEFAULT 'system'
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- trigger: schedule or manual. status: queued (asked for, not started), running, succeeded,
-- failed. What a run did: files, bytes and records it touched, and a detail object.
-- is_active is 1 while queued or running and NULL afterwards: with the unique index (NULLs
-- distinct) it stands for the other backends' partial index, one active run per job.
CREATE TABLE job_runs (
    id          VARCHAR(64) NOT NULL PRIMARY KEY,
    job_id      VARCHAR(64) NOT NULL,
    run_trigger TEXT        NOT NULL,
    status      VARCHAR(32) NOT NULL,
    queued_at   BIGINT      NOT NULL,
    started_at  BIGINT      NULL,
    finished_at BIGINT      NULL,
    duration_ms BIGINT      NULL,
    error       TEXT        NULL,
    files       BIGINT      NOT NULL DEFAULT 0,
    bytes       BIGINT      NOT NULL DEFAULT 0,
    records     BIGINT      NOT NULL DEFAULT 0,
    detail      MEDIUMTEXT  NOT NULL DEFAULT '{}',
    runner      TEXT        NULL,
    is_active   TINYINT AS (CASE WHEN status IN ('queued', 'running') THEN 1 END) STORED,
    INDEX job_runs_by_job (job_id, queued_at),
    UNIQUE INDEX job_runs_one_active (job_id, is_active)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
