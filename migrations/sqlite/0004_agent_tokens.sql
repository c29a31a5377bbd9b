-- Per-agent ingest tokens (`owl admin agent-token create`): each names one node and, optionally,
-- the one region its records may claim. Only the SHA-256 digest of a token is kept.
CREATE TABLE agent_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    region     TEXT    NOT NULL DEFAULT '',
    digest     TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
