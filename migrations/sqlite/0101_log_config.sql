-- Owl log settings (003's GET/PUT /api/v1/logs/config) and the manual cleanup queue
-- (POST /api/v1/logs/cleanup). Times are epoch milliseconds (UTC); documents are JSON text. The
-- PostgreSQL folder holds the same schema.

-- The log settings as one JSON document; one row, id 1. Absent until the first PUT: the defaults
-- (store everything, retention from the config file) apply until then. version grows with every
-- change; collectors poll it and apply a new document without a restart.
CREATE TABLE log_config (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL,
    body       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL
);

-- Manual cleanups. The query API runs one itself when it holds the index writer (owl up) and
-- queues it for the collector's worker otherwise. *_days: days kept per kind, NULL leaves the kind
-- alone. status: pending, running, done, failed. active is 1 while pending or running and NULL
-- afterwards: the unique index lets one cleanup be active at a time across every process.
-- result: the report (partitions, files, bytes) as JSON once done.
CREATE TABLE log_cleanup_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,
    http_days        INTEGER,
    application_days INTEGER,
    error_days       INTEGER,
    status           TEXT    NOT NULL,
    active           INTEGER,
    requested_by     TEXT    NOT NULL,
    requested_at     INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    result           TEXT,
    error            TEXT
);
CREATE UNIQUE INDEX log_cleanup_jobs_one_active ON log_cleanup_jobs (active);
CREATE INDEX log_cleanup_jobs_status ON log_cleanup_jobs (status, id);
