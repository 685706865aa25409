//! identity: a gRPC identity service.
//!
//! The layers are crates and modules, each depending only on those below:
//! `identity-core` (the vocabulary and pure rules) ← `identity-store`
//! (diesel, PostgreSQL and SQLite) ← [`service`] (the use cases, no gRPC
//! types) ← [`transport`] (tonic handlers, thin) ← [`server`] (builds and
//! wires everything).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin_token;
pub mod cli;
pub mod commands;
pub mod config;
pub mod infra;
pub mod proto;
pub mod provider;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod transport;
