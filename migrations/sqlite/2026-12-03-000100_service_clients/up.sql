-- See migrations/postgres: service clients, each acting as a service
-- principal profile of its own; the secret stored as its SHA-256 (hex).
CREATE TABLE service_clients (
    client_id   TEXT PRIMARY KEY NOT NULL CHECK (length(client_id) BETWEEN 1 AND 64),
    profile_id  TEXT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    roles       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    rotated_at  TEXT,
    disabled_at TEXT,
    CONSTRAINT service_clients_profile_id_key UNIQUE (profile_id)
);
