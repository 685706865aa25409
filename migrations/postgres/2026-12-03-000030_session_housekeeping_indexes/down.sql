DROP INDEX sessions_revoked_at_idx;
DROP INDEX sessions_expires_at_idx;
