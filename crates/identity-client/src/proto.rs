//! Generated client stubs for `identity.v1`, plus redacting `Debug` for the
//! messages this crate sends or receives that carry a token or a secret.

#![allow(clippy::all, missing_docs, dead_code, unreachable_pub)]

pub(crate) mod v1 {
    tonic::include_proto!("identity.v1");
}

use std::fmt;
use v1::*;

fn presence(value: &str) -> &'static str {
    if value.is_empty() {
        "<empty>"
    } else {
        "<redacted>"
    }
}

impl fmt::Debug for ValidateTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateTokenRequest")
            .field("access_token", &presence(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for ServiceLoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceLoginRequest")
            .field("client_id", &self.client_id)
            .field("client_secret", &presence(&self.client_secret))
            .finish()
    }
}

impl fmt::Debug for ServiceLoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceLoginResponse")
            .field("access_token", &presence(&self.access_token))
            .field("access_token_expire_time", &self.access_token_expire_time)
            .field("session_id", &self.session_id)
            .finish()
    }
}
