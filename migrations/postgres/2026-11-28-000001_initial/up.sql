-- Profiles are the users other services see. Local accounts use
-- auth_provider = 'local' and auth_id = the profile id; external accounts
-- keep the provider's user id, which is an opaque string.
CREATE TABLE profiles (
    id            uuid PRIMARY KEY,
    auth_provider text NOT NULL CHECK (length(auth_provider) BETWEEN 1 AND 255),
    auth_id       text NOT NULL CHECK (length(auth_id) BETWEEN 1 AND 255),
    email         text,
    display_name  text NOT NULL DEFAULT '',
    avatar_url    text NOT NULL DEFAULT '',
    locale        text NOT NULL DEFAULT '',
    -- Space-separated role names, validated by the service ([a-z0-9_-]+).
    roles         text NOT NULL DEFAULT '',
    -- Bumped on every change; the etag is derived from it.
    revision      bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT profiles_provider_auth_id_key UNIQUE (auth_provider, auth_id)
);

-- Local password credentials. The email here is the normalised login name
-- and is unique across local accounts.
CREATE TABLE credentials (
    profile_id    uuid PRIMARY KEY REFERENCES profiles (id) ON DELETE CASCADE,
    email         text NOT NULL,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CONSTRAINT credentials_email_key UNIQUE (email)
);

-- A session is the family of refresh tokens that one sign-in started.
CREATE TABLE sessions (
    id            uuid PRIMARY KEY,
    profile_id    uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    -- Absolute end of the session: refreshing never extends it.
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX sessions_profile_id_idx ON sessions (profile_id);

-- Refresh tokens are stored only as SHA-256 hashes (hex).
CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    spent_at   timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- Security events. No foreign keys: the trail outlives what it describes.
CREATE TABLE audit_events (
    id          uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_name  text NOT NULL,
    profile_id  uuid,
    session_id  uuid,
    client_addr text,
    detail      text NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_profile_id_idx ON audit_events (profile_id);
