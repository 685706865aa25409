-- The SQLite twin of migrations/postgres: SQLite has no uuid or timestamptz,
-- so ids are canonical lower-case UUID text (which sorts like PostgreSQL's
-- uuid) and times are RFC 3339 text written by diesel. The service never
-- compares times in SQL.
CREATE TABLE profiles (
    id            TEXT PRIMARY KEY NOT NULL,
    auth_provider TEXT NOT NULL CHECK (length(auth_provider) BETWEEN 1 AND 255),
    auth_id       TEXT NOT NULL CHECK (length(auth_id) BETWEEN 1 AND 255),
    email         TEXT,
    display_name  TEXT NOT NULL DEFAULT '',
    avatar_url    TEXT NOT NULL DEFAULT '',
    locale        TEXT NOT NULL DEFAULT '',
    roles         TEXT NOT NULL DEFAULT '',
    revision      BIGINT NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CONSTRAINT profiles_provider_auth_id_key UNIQUE (auth_provider, auth_id)
);

CREATE TABLE credentials (
    profile_id    TEXT PRIMARY KEY NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CONSTRAINT credentials_email_key UNIQUE (email)
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY NOT NULL,
    profile_id    TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT,
    revoke_reason TEXT
);
CREATE INDEX sessions_profile_id_idx ON sessions (profile_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    spent_at   TEXT
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY NOT NULL,
    occurred_at TEXT NOT NULL,
    event_name  TEXT NOT NULL,
    profile_id  TEXT,
    session_id  TEXT,
    client_addr TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_profile_id_idx ON audit_events (profile_id);
