ALTER TABLE profiles DROP COLUMN provider_verified_email;
DROP TABLE exchanged_provider_tokens;
