//! The Sessions API (AuthService.ListSessions, RevokeSession,
//! RevokeAllSessions), driven the way an attacker would: another user's
//! session ids and profiles, tampered and moved page tokens, a provisioner
//! reaching for password accounts, and revocations that must reach the
//! other replica within the bound.

mod listing;
mod provisioner;
mod revoking;

use crate::support::{Auth, Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email};
use identity::proto::v1::*;
use tonic::Status;

/// A server that trusts 127.0.0.1 as a proxy (so tests choose the client
/// address with `x-forwarded-for`) and has one bootstrap admin.
fn server(db: &TestDb, admin: &str, options: ServerOptions) -> Server {
    Server::start_with_options(
        db,
        options
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_BOOTSTRAP_ADMINS", admin),
    )
}

/// A server whose bootstrap admin has registered (from 198.51.100.1, with
/// `user_agent`): the database, the server, a client and the admin's tokens.
async fn with_admin(backend: Backend, user_agent: &str) -> (TestDb, Server, Auth, TokenPair) {
    let db = TestDb::new(backend);
    let admin_email = email("admin");
    let server = server(&db, &admin_email, ServerOptions::default());
    let mut auth = server.auth().await;
    let admin = register_from(&mut auth, &admin_email, "198.51.100.1", user_agent)
        .await
        .tokens
        .unwrap();
    (db, server, auth, admin)
}

/// A request from `addr` (through the trusted proxy) with `user-agent`.
fn from<T>(addr: &str, user_agent: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("x-forwarded-for", addr.parse().unwrap());
    metadata.insert("user-agent", user_agent.parse().unwrap());
    request
}

async fn register_from(auth: &mut Auth, address: &str, addr: &str, ua: &str) -> RegisterResponse {
    auth.register(from(
        addr,
        ua,
        RegisterRequest {
            email: address.into(),
            password: PASSWORD.into(),
            display_name: String::new(),
        },
    ))
    .await
    .expect("registers")
    .into_inner()
}

async fn login_from(auth: &mut Auth, address: &str, addr: &str, ua: &str) -> TokenPair {
    auth.login(from(
        addr,
        ua,
        LoginRequest {
            email: address.into(),
            password: PASSWORD.into(),
            ..Default::default()
        },
    ))
    .await
    .expect("logs in")
    .into_inner()
    .tokens
    .unwrap()
}

async fn list(
    auth: &mut Auth,
    token: &str,
    request: ListSessionsRequest,
) -> Result<ListSessionsResponse, Status> {
    auth.list_sessions(bearer(token, request))
        .await
        .map(|r| r.into_inner())
}

async fn list_own(auth: &mut Auth, token: &str) -> Vec<Session> {
    list(auth, token, ListSessionsRequest::default())
        .await
        .expect("ListSessions of one's own")
        .sessions
}

async fn revoke(auth: &mut Auth, token: &str, session_id: &str) -> Result<(), Status> {
    auth.revoke_session(bearer(
        token,
        RevokeSessionRequest {
            session_id: session_id.into(),
        },
    ))
    .await
    .map(drop)
}

async fn revoke_all(
    auth: &mut Auth,
    token: &str,
    request: RevokeAllSessionsRequest,
) -> Result<i32, Status> {
    auth.revoke_all_sessions(bearer(token, request))
        .await
        .map(|r| r.into_inner().revoked_count)
}

fn ids(sessions: &[Session]) -> Vec<&str> {
    sessions.iter().map(|s| s.session_id.as_str()).collect()
}
