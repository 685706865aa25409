-- ExchangeToken spends a provider token once: the key is the token's `jti`
-- or, without one (Better-Auth's), the SHA-256 of the token (hex, hashed
-- with a prefix saying which). Kept until the token could no longer verify
-- anyway (`exp` + leeway + a margin, seconds since the epoch); expired rows
-- are purged a few at a time by later exchanges.
CREATE TABLE exchanged_provider_tokens (
    token_key  text PRIMARY KEY,
    expires_at bigint NOT NULL
);
CREATE INDEX exchanged_provider_tokens_expires_at_idx ON exchanged_provider_tokens (expires_at);

-- The email address the provider last said it verified (`emailVerified` /
-- `email_verified`). A profile's email is verified only while it equals
-- this: an email changed here is unverified without any other write.
ALTER TABLE profiles ADD COLUMN provider_verified_email text;
