//! The binary's command line: production refusals, keygen, healthcheck,
//! graceful shutdown, help, migrations.

mod commands;
mod database_roles;
mod production;
mod roles;

use crate::support::{
    Backend, Server, ServerOptions, TempDir, TestDb, admin_command, bearer, binary, credentials,
    login, pg_text, register,
};
use std::process::Command;

/// A secret value strong enough for production.
const STRONG: &str = "kJ7vQ2mX9pL4tR8wZ1nB6yC3fH5dG0sA";
