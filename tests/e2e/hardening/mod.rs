//! The hardening checklist over real sockets: rate limits (local and
//! shared through Redis), brute-force throttling without lockout, password
//! policy, load shedding, TLS and mTLS, gRPC-Web with CORS and headers.

mod grpc_web;
mod load_shedding;
mod passwords;
mod rate_limits;
mod tls;

use crate::support::pki::{Ca, Leaf};
use crate::support::proxy::Proxy;
use crate::support::{
    Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email, eventually, forwarded_for,
    login_request, pg_text, register, tls_channel, write_tls_files,
};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;
