//! Pure rules: tokens, passwords, refresh tokens, input validation. No
//! database or network here (the bcrypt pool is threads, not I/O).

pub mod client_key;
pub mod error;
pub mod page_token;
pub mod passwords;
pub mod profile_cache;
pub mod provider;
pub mod rate_limit;
pub mod refresh;
pub mod revocations;
pub mod roles;
pub mod service_client;
pub mod throttle;
pub mod token_cache;
pub mod tokens;
pub mod validation;

pub use error::{Error, FieldViolation, Violations};
