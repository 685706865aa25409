ALTER TABLE profiles DROP COLUMN provider_synced_revision;
