-- Service clients (client credentials): a service logs in with
-- AuthService.ServiceLogin(client_id, client_secret) for an access token of
-- at most IDENTITY_ACCESS_TOKEN_TTL. Each client acts as a service principal
-- of its own (a profile with auth_provider = 'service'), so revoking "its
-- sessions" is revoking that profile's, announced like any other.
--
-- The secret is 256 random bits: stored as its SHA-256 (hex), like refresh
-- tokens (docs/decisions/0007-service-client-secrets-hashed-with-sha-256.md).
-- `roles` is what the client was created with (space-separated); the
-- profile's roles decide, as for every caller. Disabling is final: a
-- disabled client is kept for the audit trail, never re-enabled.
CREATE TABLE service_clients (
    client_id   text PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 64),
    profile_id  uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    secret_hash text NOT NULL,
    roles       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    rotated_at  timestamptz,
    disabled_at timestamptz,
    CONSTRAINT service_clients_profile_id_key UNIQUE (profile_id)
);
