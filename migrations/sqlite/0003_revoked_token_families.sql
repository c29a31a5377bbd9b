-- Sessions (token families) revoked because a used refresh token came back, kept until their
-- refresh tokens would have expired. The key-value store holds the same revocation for speed; this
-- table makes it survive a restart of an in-process store.
CREATE TABLE revoked_token_families (
    family     TEXT    NOT NULL PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX revoked_token_families_expires_at ON revoked_token_families (expires_at);
