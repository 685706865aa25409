//! identity: a gRPC identity service.
//!
//! Three layers, kept apart: [`transport`] (tonic handlers, thin) →
//! [`service`] and [`domain`] (tokens, passwords, rules) → [`store`]
//! (diesel, PostgreSQL and SQLite).

/// A security event: one JSON log line with a stable name. Attributes name
/// profiles and sessions by id and unknown accounts by a keyed pseudonym,
/// never by email, password or token.
macro_rules! security_event {
    ($name:literal, $($fields:tt)*) => {
        tracing::info!(target: "identity::security", { event.name = $name, $($fields)* }, $name)
    };
}

pub mod admin_token;
pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod pem;
pub mod proto;
pub mod provider;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod transport;
