-- See migrations/postgres: known devices, by SHA-256 hash of their token.
CREATE TABLE device_tokens (
    token_hash   TEXT PRIMARY KEY NOT NULL,
    profile_id   TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT NOT NULL
);
CREATE INDEX device_tokens_profile_id_idx ON device_tokens (profile_id);
