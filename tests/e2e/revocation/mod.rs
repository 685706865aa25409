//! The fast validation path (verified-token cache, sessions in memory) and
//! revocation across replicas: a revoked session never validates — at once
//! on the replica that revoked it, within IDENTITY_REVOCATION_MAX_STALENESS
//! on every other replica (PostgreSQL LISTEN/NOTIFY) and, on SQLite, after
//! `identity admin` (the announcements table), and after a missed
//! announcement or a revocation made outside the service.

mod listener;
mod roles;
mod sessions;

use crate::support::proxy::Proxy;
use crate::support::{
    Auth, Backend, MAX_STALENESS, PASSWORD, SLACK, Server, ServerOptions, TestDb, active, bearer,
    email, execute, login, login_with, refused_within, register, register_profile,
};
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tonic::Code;

/// Two replicas (same database, same signing key).
pub(crate) fn replicas(db: &TestDb, options: impl Fn() -> ServerOptions) -> (Server, Server) {
    let a = Server::start_with_options(db, options());
    // Started once A has written the development key, so both share it.
    let b = Server::start_with_options(db, options());
    (a, b)
}
