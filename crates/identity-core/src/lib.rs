//! identity's vocabulary and its pure rules.
//!
//! Everything here is a value or a function of values: no I/O, no async
//! runtime, no database and no gRPC (a test in `tests/e2e/crate_walls.rs`
//! keeps it so). The store maps these types to rows, the service crate's
//! use cases combine them with the store, and a client crate can share the
//! token claims and their verification.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit_filter;
pub mod client_key;
pub mod error;
pub mod events;
pub mod id;
pub mod model;
pub mod page_token;
pub mod passwords;
pub mod profile_cache;
pub mod provider;
pub mod rate_limit;
pub mod refresh;
pub mod revocations;
pub mod roles;
pub mod secure;
pub mod service_client;
pub mod throttle;
pub mod token_cache;
pub mod tokens;
pub mod validation;

// The map under token_cache, revocations and profile_cache.
mod bounded;

pub use error::{FieldViolation, Invalid, InvalidInput, Violations};
pub use id::Id;
pub use model::{AuditEvent, Profile, Revoked, Session};
