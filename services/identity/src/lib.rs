//! identity: a gRPC identity service.
//!
//! Three layers, kept apart: [`transport`] (tonic handlers, thin) →
//! [`service`] and [`domain`] (tokens, passwords, rules) → [`store`]
//! (diesel, PostgreSQL and SQLite).

pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod proto;
pub mod server;
pub mod service;
pub mod store;
pub mod transport;
