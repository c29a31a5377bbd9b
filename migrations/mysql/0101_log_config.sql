-- Owl log settings (003's GET/PUT /api/v1/logs/config) and the manual cleanup queue
-- (POST /api/v1/logs/cleanup). Times are epoch milliseconds (UTC); documents are JSON text. The
-- sqlite and postgres folders hold the same schema.

-- The log settings as one JSON document; one row, id 1. Absent until the first PUT: the defaults
-- (store everything, retention from the config file) apply until then. version grows with every
-- change; collectors poll it and apply a new document without a restart.
CREATE TABLE log_config (
    id         BIGINT     NOT NULL PRIMARY KEY CHECK (id = 1),
    version    BIGINT     NOT NULL,
    body       MEDIUMTEXT NOT NULL,
    updated_at BIGINT     NOT NULL,
    updated_by TEXT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Manual cleanups. The query API runs one itself when it holds the index writer (owl up) and
-- queues it for the collector's worker otherwise. *_days: days kept per kind, NULL leaves the kind
-- alone. status: pending, running, done, failed. active is 1 while pending or running and NULL
-- afterwards: the unique index lets one cleanup be active at a time across every process.
-- result: the report (partitions, files, bytes) as JSON once done.
CREATE TABLE log_cleanup_jobs (
    id               BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind             TEXT        NOT NULL,
    http_days        BIGINT      NULL,
    application_days BIGINT      NULL,
    error_days       BIGINT      NULL,
    status           VARCHAR(32) NOT NULL,
    active           BIGINT      NULL,
    requested_by     TEXT        NOT NULL,
    requested_at     BIGINT      NOT NULL,
    started_at       BIGINT      NULL,
    finished_at      BIGINT      NULL,
    result           MEDIUMTEXT  NULL,
    error            TEXT        NULL,
    UNIQUE INDEX log_cleanup_jobs_one_active (active),
    INDEX log_cleanup_jobs_status (status, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
