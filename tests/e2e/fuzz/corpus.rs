//! The hostile inputs: a seeded generator, protobuf mutations, broken gRPC
//! and gRPC-Web framing, hostile bearer lines, and a valid request of
//! every unary method to start from.

use super::*;

/// Fixed so that a failure reproduces; IDENTITY_FUZZ_SEED explores others.
pub(super) const SEED: u64 = 0x1de7_f00d_5eed;

/// splitmix64: tiny and deterministic, enough to pick mutations.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(field: u64, wire_type: u64, out: &mut Vec<u8>) {
    varint(field << 3 | wire_type, out);
}

pub(super) fn delimited(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

const INVALID_UTF8: [&[u8]; 5] = [
    b"\xff",
    b"ann\xc3\x28@example.com",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"Bearer \xc0\xaf",
];

/// A valid request turned hostile, in one of ten ways.
pub(super) fn mutate(valid: &[u8], rng: &mut Rng, kind: usize) -> (String, Vec<u8>) {
    let mut bytes = valid.to_vec();
    let field = 1 + rng.below(3) as u64;
    let name = match kind {
        0 => {
            if bytes.is_empty() {
                bytes = rng.bytes(3);
            }
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            "flipped bits"
        }
        1 => {
            let at = rng.below(bytes.len() + 1);
            let count = 1 + rng.below(8);
            bytes.splice(at..at, rng.bytes(count));
            "inserted bytes"
        }
        2 => {
            if bytes.is_empty() {
                bytes = vec![0x0a, 0x05, b'a'];
            } else {
                bytes.truncate(rng.below(bytes.len()));
            }
            "truncated"
        }
        3 => {
            let text = INVALID_UTF8[rng.below(INVALID_UTF8.len())];
            delimited(field, text, &mut bytes);
            "invalid UTF-8 in a string field"
        }
        4 => {
            let mut inner = Vec::new();
            delimited(
                1 + rng.below(11) as u64,
                INVALID_UTF8[rng.below(INVALID_UTF8.len())],
                &mut inner,
            );
            delimited(field, &inner, &mut bytes);
            "invalid UTF-8 in a nested message"
        }
        5 => {
            if rng.below(2) == 0 {
                key(field, 0, &mut bytes);
                bytes.extend_from_slice(&[0xff; 11]);
            } else {
                key(field, 2, &mut bytes);
                varint(u64::MAX >> 1, &mut bytes);
                bytes.extend_from_slice(b"short");
            }
            "huge varint"
        }
        6 => {
            let wire_type = [0, 1, 3, 4, 5, 6, 7][rng.below(7)];
            key(field, wire_type, &mut bytes);
            let count = rng.below(9);
            bytes.extend_from_slice(&rng.bytes(count));
            "wrong wire type"
        }
        7 => {
            let count = 1 + rng.below(64);
            bytes = rng.bytes(count);
            "random bytes"
        }
        8 => {
            let depth = 80 + rng.below(200);
            bytes.clear();
            for _ in 0..depth {
                key(15, 3, &mut bytes);
            }
            for _ in 0..depth {
                key(15, 4, &mut bytes);
            }
            "deeply nested groups"
        }
        _ => {
            bytes.push(0);
            "field number zero"
        }
    };
    (name.to_owned(), bytes)
}

/// A case name, an extra header, the request body.
pub(super) type Framing = (&'static str, Option<(&'static str, &'static str)>, Vec<u8>);

/// Broken gRPC framing around a valid message.
pub(super) fn framings(valid: &[u8]) -> Vec<Framing> {
    let framed = frame(valid);
    let mut compressed = framed.clone();
    compressed[0] = 1;
    let mut bad_flag = framed.clone();
    bad_flag[0] = 0x80;
    let mut long = framed.clone();
    long[1..5].copy_from_slice(&(valid.len() as u32 + 7).to_be_bytes());
    let mut twice = framed.clone();
    twice.extend_from_slice(&framed);
    vec![
        (
            "compressed flag without grpc-encoding",
            None,
            compressed.clone(),
        ),
        ("invalid compression flag", None, bad_flag),
        ("frame shorter than its length", None, long),
        ("no message at all", None, Vec::new()),
        ("half a frame header", None, framed[..3].to_vec()),
        ("two messages in a unary call", None, twice),
        (
            "gzip flag with garbage",
            Some(("grpc-encoding", "gzip")),
            compressed,
        ),
        (
            "unknown grpc-encoding",
            Some(("grpc-encoding", "brotli-9000")),
            framed.clone(),
        ),
        (
            "grpc-web content type",
            Some(("content-type", "application/grpc-web+proto")),
            framed.clone(),
        ),
        (
            "garbage grpc-timeout",
            Some(("grpc-timeout", "99999999999H")),
            framed,
        ),
    ]
}

/// The same service through the gRPC-Web layer, binary and base64 text:
/// name, content type, body.
pub(super) fn grpc_web(valid: &[u8], rng: &mut Rng) -> Vec<(String, &'static str, Vec<u8>)> {
    use base64::Engine as _;
    let base64 = |bytes: &[u8]| {
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    };
    let kind = 3 + rng.below(7);
    let (case, mutated) = mutate(valid, rng, kind);
    let framed = frame(valid);
    vec![
        (
            format!("gRPC-Web, {case}"),
            "application/grpc-web+proto",
            frame(&mutated),
        ),
        (
            format!("gRPC-Web text, {case}"),
            "application/grpc-web-text+proto",
            base64(&frame(&mutated)),
        ),
        (
            "gRPC-Web text, not base64".into(),
            "application/grpc-web-text+proto",
            b"!!not*base64??".to_vec(),
        ),
        (
            "gRPC-Web text, a cut frame".into(),
            "application/grpc-web-text+proto",
            base64(&framed[..framed.len().saturating_sub(1).max(3)]),
        ),
        (
            "gRPC-Web, trailers frame as the request".into(),
            "application/grpc-web+proto",
            [&[0x80, 0, 0, 0, 4][..], b"a:b\n"].concat(),
        ),
    ]
}

/// Hostile `authorization` values: name, header lines in order.
pub(super) fn hostile_bearers(valid_token: &str) -> Vec<(&'static str, Vec<HeaderValue>)> {
    let value = |s: String| HeaderValue::from_str(&s).unwrap();
    vec![
        (
            "a 12 KiB token",
            vec![value(format!("Bearer {}", "A".repeat(12 * 1024)))],
        ),
        (
            "non-ASCII bytes",
            vec![HeaderValue::from_bytes(b"Bearer \xff\xfe\x80token\xc3\x28").unwrap()],
        ),
        ("Bearer and no token", vec![value("Bearer".into())]),
        ("Bearer and a space", vec![value("Bearer ".into())]),
        (
            "many spaces",
            vec![value(format!("Bearer{}{valid_token}", " ".repeat(500)))],
        ),
        ("only spaces", vec![value(" ".repeat(64))]),
        ("another scheme", vec![value("Basic dXNlcjpwYXNz".into())]),
        (
            "a forged line before the real one",
            vec![
                value("Bearer forged.token.here".into()),
                value(format!("Bearer {valid_token}")),
            ],
        ),
        (
            "a forged line after the real one",
            vec![
                value(format!("Bearer {valid_token}")),
                value("Bearer forged.token.here".into()),
            ],
        ),
        (
            "a token of dots and a control-free mess",
            vec![value(format!("bEaReR \t{}\t", ".".repeat(300)))],
        ),
    ]
}

/// An ext_authz Check of `GET /` carrying `access` as its bearer token.
fn ext_authz_check(access: &str) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/".into(),
                    headers: [("authorization".to_owned(), format!("Bearer {access}"))].into(),
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

/// Every unary method with a valid request of its own. The requests are
/// chosen so that a mutation that happens to stay valid does no harm to
/// the caller's session (no real refresh token, a wrong current password).
pub(super) fn templates(access: &str, profile_id: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "/identity.v1.AuthService/Register",
            RegisterRequest {
                email: email("fuzzed"),
                password: PASSWORD.into(),
                display_name: "Fuzz".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/Login",
            LoginRequest {
                email: email("nobody"),
                password: "not the password at all".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/Refresh",
            RefreshRequest {
                refresh_token: "not-a-refresh-token".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/Logout",
            LogoutRequest {
                refresh_token: "not-a-refresh-token".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/ValidateToken",
            ValidateTokenRequest {
                access_token: access.into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/ChangePassword",
            ChangePasswordRequest {
                current_password: "not the password at all".into(),
                new_password: "an entirely new passphrase 42".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/GetJwks",
            GetJwksRequest {}.encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/ExchangeToken",
            ExchangeTokenRequest {
                subject_token: "a.b.c".into(),
                subject_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/ServiceLogin",
            ServiceLoginRequest {
                client_id: "svc_00000000000000000000000000000000".into(),
                client_secret: "idsec_not-the-secret".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/ListSessions",
            ListSessionsRequest {
                profile_id: String::new(),
                page_size: 10,
                page_token: String::new(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.AuthService/RevokeSession",
            RevokeSessionRequest {
                session_id: uuid::Uuid::new_v4().to_string(),
            }
            .encode_to_vec(),
        ),
        // keep_current: a mutation that empties profile_id must not end
        // the session the other templates call with.
        (
            "/identity.v1.AuthService/RevokeAllSessions",
            RevokeAllSessionsRequest {
                profile_id: uuid::Uuid::new_v4().to_string(),
                keep_current: true,
                auth_provider: String::new(),
                auth_id: String::new(),
            }
            .encode_to_vec(),
        ),
        // The one streaming method: the fuzzer is no watcher, so every
        // call ends before a stream starts (PERMISSION_DENIED, or the
        // decoding or cursor refusal before it).
        (
            "/identity.v1.AuthService/WatchRevocations",
            WatchRevocationsRequest {
                resume_after: "c1.AAAA".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.ProfileService/GetProfile",
            GetProfileRequest {
                id: profile_id.into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.ProfileService/LookupProfile",
            LookupProfileRequest {
                auth_provider: "local".into(),
                auth_id: profile_id.into(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.ProfileService/CreateProfile",
            CreateProfileRequest {
                profile: Some(UserProfile {
                    email: email("created"),
                    display_name: "Made".into(),
                    ..Default::default()
                }),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.ProfileService/UpdateProfile",
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    id: profile_id.into(),
                    display_name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.ProfileService/DeleteProfile",
            DeleteProfileRequest {
                id: uuid::Uuid::new_v4().to_string(),
                etag: String::new(),
                current_password: String::new(),
            }
            .encode_to_vec(),
        ),
        (
            "/identity.v1.ProfileService/ListProfiles",
            ListProfilesRequest {
                page_size: 10,
                page_token: String::new(),
                filter: String::new(),
            }
            .encode_to_vec(),
        ),
        // The token travels inside the message here: a mutation lands in
        // the HTTP headers the proxy forwards.
        (
            "/envoy.service.auth.v3.Authorization/Check",
            ext_authz_check(access).encode_to_vec(),
        ),
        (
            "/grpc.health.v1.Health/Check",
            tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            }
            .encode_to_vec(),
        ),
        // Streaming, but one request and the end of the stream make a call.
        (
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            reflection::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    reflection::server_reflection_request::MessageRequest::FileContainingSymbol(
                        "identity.v1.AuthService".into(),
                    ),
                ),
            }
            .encode_to_vec(),
        ),
    ]
}
