//! Every ProfileService RPC (and ChangePassword) refuses a caller that is
//! not authenticated: no header, a malformed one, and tokens that are
//! tampered, escalated, expired or revoked.

use super::*;
use crate::on_both_backends;
use crate::support::{claims_of, eddsa_header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use identity_core::tokens::{Ed25519Key, generate_ed25519_pem};
use jsonwebtoken::EncodingKey;
use secrecy::ExposeSecret;
use serde_json::json;
use tonic::Code;

on_both_backends!(every_rpc_refuses_missing_tampered_expired_and_revoked_tokens);

/// `message` with `authorization: <value>`, or without the header at all.
fn with_authorization<T>(value: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = value {
        request.metadata_mut().insert(
            "authorization",
            value.parse().expect("a valid header value"),
        );
    }
    request
}

/// Calls every ProfileService RPC, and ChangePassword, with `authorization`.
async fn call_every_rpc(
    w: &World,
    authorization: Option<&str>,
    victim: &UserProfile,
) -> Vec<(&'static str, Result<(), Status>)> {
    let mut profiles = ProfileServiceClient::new(w.channel.clone());
    let mut auth = w.auth.clone();
    let h = authorization;
    vec![
        (
            "GetProfile",
            profiles
                .get_profile(with_authorization(h, GetProfileRequest { id: "me".into() }))
                .await
                .map(|_| ()),
        ),
        (
            "GetProfile by id",
            profiles
                .get_profile(with_authorization(
                    h,
                    GetProfileRequest {
                        id: victim.id.clone(),
                    },
                ))
                .await
                .map(|_| ()),
        ),
        (
            "LookupProfile",
            profiles
                .lookup_profile(with_authorization(
                    h,
                    LookupProfileRequest {
                        auth_provider: "local".into(),
                        auth_id: victim.id.clone(),
                    },
                ))
                .await
                .map(|_| ()),
        ),
        (
            "CreateProfile",
            profiles
                .create_profile(with_authorization(
                    h,
                    CreateProfileRequest {
                        profile: Some(external("test-idp", "made-without-auth")),
                    },
                ))
                .await
                .map(|_| ()),
        ),
        (
            "UpdateProfile",
            profiles
                .update_profile(with_authorization(
                    h,
                    UpdateProfileRequest {
                        profile: Some(UserProfile {
                            display_name: "Changed Without Auth".into(),
                            roles: vec![ADMIN.into(), "owned".into()],
                            ..target(victim)
                        }),
                        update_mask: Some(mask(&["display_name", "roles"])),
                    },
                ))
                .await
                .map(|_| ()),
        ),
        (
            "DeleteProfile",
            profiles
                .delete_profile(with_authorization(
                    h,
                    DeleteProfileRequest {
                        id: victim.id.clone(),
                        etag: String::new(),
                        current_password: String::new(),
                    },
                ))
                .await
                .map(|_| ()),
        ),
        (
            "ListProfiles",
            profiles
                .list_profiles(with_authorization(h, ListProfilesRequest::default()))
                .await
                .map(|_| ()),
        ),
        (
            "ChangePassword",
            auth.change_password(with_authorization(
                h,
                ChangePasswordRequest {
                    current_password: PASSWORD.into(),
                    new_password: "a brand new long passphrase".into(),
                },
            ))
            .await
            .map(|_| ()),
        ),
    ]
}

async fn every_rpc_refuses_missing_tampered_expired_and_revoked_tokens(backend: Backend) {
    // A known signing key, so that an expired token can be made properly.
    let db = TestDb::new(backend);
    let pem = generate_ed25519_pem().unwrap();
    let key_file = db.dir.path().join("signing.pem");
    std::fs::write(&key_file, pem.expose_secret()).unwrap();
    let kid = Ed25519Key::from_pem(pem.expose_secret(), "test")
        .unwrap()
        .kid()
        .to_owned();
    let key = EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap();
    let mut w = World::start_with(
        db,
        ServerOptions::default().env("IDENTITY_SIGNING_KEY_FILE", key_file.display().to_string()),
    )
    .await;

    // The tokens below are the admin's: only authentication can stop them.
    let admin = w.admin();
    let admin_profile = admin.get("me").await.expect("the admin reads itself");
    let real = w.admin.tokens.access_token.clone();
    let now = chrono::Utc::now().timestamp();
    let mut claims = claims_of(&real);

    // Control: made the same way as the expired token, but current. It must
    // work, so the expired one fails for its expiry and nothing else.
    claims["jti"] = json!(format!("control-{}", uuid::Uuid::new_v4()));
    let control = jsonwebtoken::encode(&eddsa_header(&kid), &claims, &key).unwrap();
    assert_eq!(
        w.caller(&control)
            .get("me")
            .await
            .expect("the control token works")
            .id,
        admin_profile.id
    );
    claims["jti"] = json!(format!("expired-{}", uuid::Uuid::new_v4()));
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = jsonwebtoken::encode(&eddsa_header(&kid), &claims, &key).unwrap();

    let mut flipped = real.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(flipped).unwrap();

    // A non-admin's token whose payload was edited to claim admin.
    let mallory = w.register("mallory").await;
    let mut parts: Vec<String> = mallory
        .tokens
        .access_token
        .split('.')
        .map(str::to_owned)
        .collect();
    let mut elevated = claims_of(&mallory.tokens.access_token);
    elevated["roles"] = json!([ADMIN]);
    elevated["sub"] = json!(admin_profile.id);
    parts[1] = B64.encode(elevated.to_string());
    let escalated = parts.join(".");

    // A second admin session, logged out: its access token is revoked.
    let second = w
        .login(&w.admin.email.clone(), PASSWORD)
        .await
        .expect("the admin logs in");
    w.auth
        .logout(bearer(&second.access_token, LogoutRequest::default()))
        .await
        .expect("logout");
    assert!(!w.validate(&second.access_token).await.active);

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no authorization header", None),
        ("empty header", Some(String::new())),
        ("scheme only", Some("Bearer".into())),
        ("scheme and a space", Some("Bearer ".into())),
        ("token without scheme", Some(real.clone())),
        (
            "Basic credentials",
            Some(format!(
                "Basic {}",
                B64.encode(format!("{}:{PASSWORD}", w.admin.email))
            )),
        ),
        ("two tokens", Some(format!("Bearer {real} {real}"))),
        ("garbage token", Some("Bearer not.a.jwt".into())),
        ("random bytes", Some(format!("Bearer {}", "x".repeat(500)))),
        (
            "refresh token as bearer",
            Some(format!("Bearer {}", w.admin.tokens.refresh_token)),
        ),
        ("tampered signature", Some(format!("Bearer {tampered}"))),
        (
            "payload edited to claim admin",
            Some(format!("Bearer {escalated}")),
        ),
        ("expired", Some(format!("Bearer {expired}"))),
        (
            "revoked by logout",
            Some(format!("Bearer {}", second.access_token)),
        ),
    ];
    for (case, header) in &cases {
        for (rpc, result) in call_every_rpc(&w, header.as_deref(), &admin_profile).await {
            match result {
                Err(status) => assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{rpc} with {case}: {status:?}"
                ),
                Ok(()) => panic!("{rpc} with {case}: accepted"),
            }
        }
    }

    // Nothing any of those calls attempted happened.
    assert_eq!(admin.get("me").await.unwrap(), admin_profile);
    assert_eq!(
        admin
            .lookup("test-idp", "made-without-auth")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let admin_email = w.admin.email.clone();
    w.login(&admin_email, PASSWORD)
        .await
        .expect("the password did not change");
    assert!(w.validate(&real).await.active, "the real session is intact");
}
