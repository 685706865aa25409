-- Housekeeping deletes sessions that ended (expired or revoked) before the
-- retention cut-off, a batch at a time: without these each batch would scan
-- the whole table, which grows with every login.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at);
