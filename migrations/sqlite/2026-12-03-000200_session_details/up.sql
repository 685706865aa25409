-- See migrations/postgres: where a session started, the user agent of its
-- sign-in, and when it was last refreshed.
ALTER TABLE sessions ADD COLUMN client_addr TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN last_used_at TEXT;
