//! Generated gRPC code for `identity.v1`, plus redacting `Debug` for the
//! messages that carry passwords or tokens.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("identity.v1");
}

/// `envoy.service.auth.v3.Authorization` (Envoy and Istio external
/// authorization) over envoy-types' messages (see build.rs).
pub mod ext_authz {
    tonic::include_proto!("envoy.service.auth.v3");
}

/// The encoded descriptors of `envoy.service.auth.v3` and its imports, for
/// server reflection.
pub const EXT_AUTHZ_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));

/// The encoded descriptors of `identity.v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/identity_descriptor.bin"));

use std::fmt;
use v1::*;

/// Shows whether a secret field was set, never its value.
fn presence(value: &str) -> &'static str {
    if value.is_empty() {
        "<empty>"
    } else {
        "<redacted>"
    }
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("email", &presence(&self.email))
            .field("password", &presence(&self.password))
            .field("display_name", &self.display_name.chars().count())
            .finish()
    }
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &presence(&self.email))
            .field("password", &presence(&self.password))
            .field("device_token", &presence(&self.device_token))
            .finish()
    }
}

impl fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginResponse")
            .field("tokens", &self.tokens)
            .field("device_token", &presence(&self.device_token))
            .finish()
    }
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest")
            .field("refresh_token", &presence(&self.refresh_token))
            .finish()
    }
}

impl fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutRequest")
            .field("refresh_token", &presence(&self.refresh_token))
            .finish()
    }
}

impl fmt::Debug for ValidateTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateTokenRequest")
            .field("access_token", &presence(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangePasswordRequest")
            .field("current_password", &presence(&self.current_password))
            .field("new_password", &presence(&self.new_password))
            .finish()
    }
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &presence(&self.access_token))
            .field("refresh_token", &presence(&self.refresh_token))
            .field("token_type", &self.token_type)
            .field("access_token_expire_time", &self.access_token_expire_time)
            .field("refresh_token_expire_time", &self.refresh_token_expire_time)
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl fmt::Debug for ExchangeTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeTokenRequest")
            .field("subject_token", &presence(&self.subject_token))
            .field("subject_token_type", &self.subject_token_type)
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
            .field("token_type", &self.token_type)
            .field("access_token_expire_time", &self.access_token_expire_time)
            .field("session_id", &self.session_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::v1::*;

    #[test]
    fn debug_of_secret_bearing_messages_shows_no_secret() {
        let request = LoginRequest {
            email: "ann@example.com".into(),
            password: "hunter2hunter2".into(),
            device_token: "d3v1c3".into(),
        };
        let printed = format!("{request:?}");
        assert!(
            !printed.contains("hunter2")
                && !printed.contains("ann@")
                && !printed.contains("d3v1c3"),
            "{printed}"
        );
        let response = LoginResponse {
            tokens: None,
            device_token: "d3v1c3".into(),
        };
        let printed = format!("{response:?}");
        assert!(!printed.contains("d3v1c3"), "{printed}");
        let pair = TokenPair {
            access_token: "eyJhbGciOi.secret".into(),
            refresh_token: "r3fr3sh".into(),
            ..Default::default()
        };
        let printed = format!(
            "{:?} {:?}",
            ServiceLoginRequest {
                client_id: "svc_1".into(),
                client_secret: "idsec_s3cr3t".into(),
            },
            ServiceLoginResponse {
                access_token: "eyJhbGciOi.secret".into(),
                ..Default::default()
            }
        );
        assert!(
            !printed.contains("s3cr3t") && !printed.contains("eyJ"),
            "{printed}"
        );
        let printed = format!("{pair:?}");
        assert!(
            !printed.contains("eyJ") && !printed.contains("r3fr3sh"),
            "{printed}"
        );
    }
}
