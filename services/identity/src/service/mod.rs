//! Use cases: what each RPC does, in terms of the domain rules and the
//! store. No gRPC types here.

pub mod audit;
pub mod audit_trail;
pub mod auth;
pub mod error;
pub mod events;
pub mod exchange;
pub mod housekeeping;
pub mod paging;
pub mod profile_change;
pub mod profiles;
pub mod revocation;
pub mod service_clients;
pub mod service_token;
#[cfg(test)]
pub(crate) mod testing;
pub mod watch;

pub use auth::{Auth, AuthSettings, Caller, IssuedTokens};
pub use error::{Error, Exhausted};
pub use profiles::{Principal, Profiles};
