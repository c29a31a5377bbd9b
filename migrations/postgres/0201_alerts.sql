-- Owl alerting: the alerts the engine raises (003 alert history, 000 active alerts), the alert
-- configuration the query API edits, muted alert types and the IPs refused after an IP anomaly.
-- Times are epoch milliseconds (UTC); lists and objects are JSON text; ids of alerts are UUIDs so
-- the same id names an alert in the 003 and 000 APIs. The SQLite folder holds the same schema.

-- One row per incident: repeats while the condition holds fold into it (occurrences).
-- alert_type: SLOW_REQUEST, HIGH_ERROR_RATE, DISK_SPACE, IP_ANOMALY, CPU_HIGH, MEMORY_HIGH.
-- alert_key: what the incident is about within its type (service, endpoint, host and mount, IP).
-- state: OPEN while the condition holds, RESOLVED once it cleared.
-- status: delivery of the latest notice (PENDING, SENT, FAILED), SUPPRESSED when nothing was sent
-- (type muted, no channel enabled), ACKNOWLEDGED once someone took it (kept from then on).
CREATE TABLE alerts (
    id              TEXT    PRIMARY KEY,
    alert_type      TEXT    NOT NULL,
    alert_key       TEXT    NOT NULL,
    severity        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    context         TEXT    NOT NULL DEFAULT '{}',
    service         TEXT,
    host            TEXT,
    region          TEXT,
    channels        TEXT    NOT NULL DEFAULT '[]',
    occurrences     BIGINT  NOT NULL DEFAULT 1,
    notices         BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    last_seen_at    BIGINT  NOT NULL,
    notified_at     BIGINT,
    sent_at         BIGINT,
    resolved_at     BIGINT,
    acknowledged_at BIGINT,
    acknowledged_by TEXT
);
CREATE INDEX alerts_created_at ON alerts (created_at);
CREATE INDEX alerts_state ON alerts (state, created_at);
-- At most one open alert per type and key, whatever process raises it.
CREATE UNIQUE INDEX alerts_one_open ON alerts (alert_type, alert_key) WHERE state = 'OPEN';

-- The live alert configuration (rules and channels, with channel secrets) as JSON; one row, id 1.
-- Absent until the first PUT: the config file's [alerts] and [notifications] apply until then.
-- version grows with every change so engines reload it without a restart.
CREATE TABLE alert_config (
    id         BIGINT  PRIMARY KEY,
    settings   TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    updated_by TEXT    NOT NULL
);

-- An alert type muted until a time: alerts are still recorded, no notice goes out.
CREATE TABLE alert_mutes (
    alert_type TEXT    PRIMARY KEY,
    until_at   BIGINT  NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    created_by TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

-- Client IPs over the IP_ANOMALY rate, refused by the query API until until_at.
CREATE TABLE blocked_ips (
    ip         TEXT    PRIMARY KEY,
    until_at   BIGINT  NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    alert_id   TEXT,
    created_at BIGINT  NOT NULL
);
CREATE INDEX blocked_ips_until ON blocked_ips (until_at);
