-- See migrations/postgres: the revision the provider sync last wrote.
ALTER TABLE profiles ADD COLUMN provider_synced_revision BIGINT;
