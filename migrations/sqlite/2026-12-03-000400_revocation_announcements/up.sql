-- SQLite has no LISTEN/NOTIFY, and `identity admin` writes the same file
-- from another process: every transaction that revokes sessions or changes
-- a profile appends what it did here (the payloads of PostgreSQL's
-- announcements), and the server reads what is new every quarter of
-- IDENTITY_REVOCATION_MAX_STALENESS (docs/decisions/0016).
-- AUTOINCREMENT: an id is never handed out twice, even after pruning, so
-- "id > the last one read" never skips a row. SQLite has one writer at a
-- time, so ids also grow in commit order.
CREATE TABLE revocation_announcements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    -- Unix milliseconds of the writer's clock: for pruning only.
    announced_at INTEGER NOT NULL
);
CREATE INDEX revocation_announcements_announced_at ON revocation_announcements (announced_at);
