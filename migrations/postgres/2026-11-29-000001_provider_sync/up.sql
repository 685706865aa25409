-- ExchangeToken keeps an external profile's email and display name in step
-- with the provider's claims for as long as nobody has changed the profile
-- here: this is the revision the provider sync last wrote. NULL means the
-- profile was created some other way (CreateProfile), which counts as
-- in step at revision 1.
ALTER TABLE profiles ADD COLUMN provider_synced_revision bigint;
