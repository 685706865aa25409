-- See migrations/postgres: provider tokens already exchanged (expires_at in
-- seconds since the epoch, so it compares as a number), and the email the
-- provider last said it verified.
CREATE TABLE exchanged_provider_tokens (
    token_key  TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX exchanged_provider_tokens_expires_at_idx ON exchanged_provider_tokens (expires_at);

ALTER TABLE profiles ADD COLUMN provider_verified_email TEXT;
