-- What ListSessions shows of a session: where it started (the client
-- address as the service resolved it, behind trusted proxies only), the
-- `user-agent` its sign-in sent (cut to 256 bytes), and when it was last
-- refreshed. Last use moves on Refresh only, not on every validation: that
-- is the hot path, answered from memory, and a write per call would cost
-- more than the answer. Sessions started before this migration have NULLs
-- (shown as unknown; last used = created).
ALTER TABLE sessions ADD COLUMN client_addr text;
ALTER TABLE sessions ADD COLUMN user_agent text;
ALTER TABLE sessions ADD COLUMN last_used_at timestamptz;
