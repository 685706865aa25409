-- Devices an account has logged in from (OWASP's device cookie): a Login
-- that presents one of these tokens is exempt from the account-wide limits
-- strangers can trip. Stored only as SHA-256 hashes (hex), like refresh
-- tokens. A password change deletes the profile's rows.
CREATE TABLE device_tokens (
    token_hash   text PRIMARY KEY,
    profile_id   uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL
);
CREATE INDEX device_tokens_profile_id_idx ON device_tokens (profile_id);
