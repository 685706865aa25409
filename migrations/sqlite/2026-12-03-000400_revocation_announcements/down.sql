DROP TABLE revocation_announcements;
