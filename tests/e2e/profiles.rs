//! ProfileService: who may read and change which profile, bearer tokens on
//! every call, field masks and etags, deletion ending every session,
//! pagination under concurrent inserts, hostile strings and uniqueness races.

use crate::on_both_backends;
use crate::support::{Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email};
use crate::support::{assert_invalid, violated_fields};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use identity_core::tokens::{Ed25519Key, generate_ed25519_pem};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost_types::{FieldMask, Timestamp};
use secrecy::ExposeSecret;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};

on_both_backends!(
    owners_manage_themselves_and_only_admins_reach_other_profiles,
    every_rpc_refuses_missing_tampered_expired_and_revoked_tokens,
    stale_etags_abort_and_bad_update_masks_are_invalid,
    each_invalid_profile_field_is_named_and_nothing_changes,
    deleting_a_profile_ends_its_sessions_and_its_login,
    a_paginated_walk_sees_every_profile_once_despite_concurrent_inserts,
    hostile_strings_round_trip_byte_for_byte_or_are_refused_by_name,
    concurrent_creates_for_one_pair_make_exactly_one_profile,
);

// ---------------------------------------------------------------------------
// Helpers

const ADMIN: &str = "admin";

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

/// `hidden` (someone else's profile) must be indistinguishable from
/// `missing` (a profile that does not exist).
#[track_caller]
fn assert_same_as_missing(hidden: Status, missing: Status, rpc: &str) {
    assert_eq!(hidden.code(), Code::NotFound, "{rpc}: {hidden:?}");
    assert_eq!(missing.code(), Code::NotFound, "{rpc}: {missing:?}");
    assert_eq!(
        hidden.message(),
        missing.message(),
        "{rpc}: another user's profile must look exactly like a missing one"
    );
}

fn mask(paths: &[&str]) -> FieldMask {
    FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn time(t: &Option<Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp is set");
    (t.seconds, t.nanos)
}

fn has_role(profile: &UserProfile, role: &str) -> bool {
    profile.roles.iter().any(|r| r == role)
}

fn sorted(mut roles: Vec<String>) -> Vec<String> {
    roles.sort();
    roles
}

/// The id and etag of `profile`, nothing else: the start of an update.
fn target(profile: &UserProfile) -> UserProfile {
    UserProfile {
        id: profile.id.clone(),
        etag: profile.etag.clone(),
        ..Default::default()
    }
}

/// A profile for an external provider, as an admin would create it.
fn external(provider: &str, auth_id: &str) -> UserProfile {
    UserProfile {
        auth_provider: provider.into(),
        auth_id: auth_id.into(),
        email: email("ext"),
        display_name: "External User".into(),
        locale: "en".into(),
        ..Default::default()
    }
}

/// Compares strings byte for byte without dumping 10 KB into the report.
#[track_caller]
fn assert_same_bytes(got: &str, want: &str, case: &str) {
    if got.as_bytes() != want.as_bytes() {
        let clip = |s: &str| s.chars().take(60).collect::<String>();
        panic!(
            "{case}: stored mangled: got {} bytes {:?}…, sent {} bytes {:?}…",
            got.len(),
            clip(got),
            want.len(),
            clip(want)
        );
    }
}

/// A registered local account and the session its registration opened.
#[derive(Clone)]
struct Account {
    email: String,
    password: String,
    profile: UserProfile,
    tokens: TokenPair,
}

/// A ProfileService client that sends one caller's access token.
#[derive(Clone)]
struct Caller {
    client: ProfileServiceClient<Channel>,
    token: String,
}

impl Caller {
    async fn get(&self, id: &str) -> Result<UserProfile, Status> {
        let request = bearer(&self.token, GetProfileRequest { id: id.into() });
        Ok(self.client.clone().get_profile(request).await?.into_inner())
    }

    async fn lookup(&self, auth_provider: &str, auth_id: &str) -> Result<UserProfile, Status> {
        let request = bearer(
            &self.token,
            LookupProfileRequest {
                auth_provider: auth_provider.into(),
                auth_id: auth_id.into(),
            },
        );
        Ok(self
            .client
            .clone()
            .lookup_profile(request)
            .await?
            .into_inner())
    }

    async fn create(&self, profile: UserProfile) -> Result<UserProfile, Status> {
        let request = bearer(
            &self.token,
            CreateProfileRequest {
                profile: Some(profile),
            },
        );
        Ok(self
            .client
            .clone()
            .create_profile(request)
            .await?
            .into_inner())
    }

    async fn update(&self, profile: UserProfile, paths: &[&str]) -> Result<UserProfile, Status> {
        self.update_request(UpdateProfileRequest {
            profile: Some(profile),
            update_mask: Some(mask(paths)),
        })
        .await
    }

    async fn update_request(&self, message: UpdateProfileRequest) -> Result<UserProfile, Status> {
        let request = bearer(&self.token, message);
        Ok(self
            .client
            .clone()
            .update_profile(request)
            .await?
            .into_inner())
    }

    async fn delete(&self, id: &str, etag: &str) -> Result<(), Status> {
        let request = bearer(
            &self.token,
            DeleteProfileRequest {
                id: id.into(),
                etag: etag.into(),
                current_password: PASSWORD.into(),
            },
        );
        self.client.clone().delete_profile(request).await?;
        Ok(())
    }

    async fn list(
        &self,
        page_size: i32,
        page_token: &str,
        filter: &str,
    ) -> Result<ListProfilesResponse, Status> {
        let request = bearer(
            &self.token,
            ListProfilesRequest {
                page_size,
                page_token: page_token.into(),
                filter: filter.into(),
            },
        );
        Ok(self
            .client
            .clone()
            .list_profiles(request)
            .await?
            .into_inner())
    }

    /// Every page of a listing, in order.
    async fn list_all(&self, page_size: i32, filter: &str) -> Vec<UserProfile> {
        let mut all = Vec::new();
        let mut token = String::new();
        for _ in 0..1000 {
            let page = self
                .list(page_size, &token, filter)
                .await
                .expect("ListProfiles answers");
            all.extend(page.profiles);
            if page.next_page_token.is_empty() {
                return all;
            }
            token = page.next_page_token;
        }
        panic!("the listing never reached its last page");
    }
}

/// A server whose `IDENTITY_BOOTSTRAP_ADMINS` names one registered admin.
struct World {
    _server: Server,
    _db: TestDb,
    channel: Channel,
    auth: AuthServiceClient<Channel>,
    admin: Account,
}

impl World {
    async fn start(backend: Backend) -> World {
        World::start_with(TestDb::new(backend), ServerOptions::default()).await
    }

    async fn start_with(db: TestDb, options: ServerOptions) -> World {
        let admin_email = email("admin");
        // A listed email that never registers must not matter.
        let admins = format!("{},{admin_email}", email("absent-admin"));
        let server = Server::start_with(
            &db.url,
            db.dir.path(),
            options.env("IDENTITY_BOOTSTRAP_ADMINS", admins),
        );
        let channel = server.channel().await;
        let mut auth = AuthServiceClient::new(channel.clone());
        let admin = register_account(&mut auth, &admin_email, "Root Admin").await;
        assert!(
            has_role(&admin.profile, ADMIN),
            "an email in IDENTITY_BOOTSTRAP_ADMINS registers as admin: {:?}",
            admin.profile
        );
        World {
            _server: server,
            _db: db,
            channel,
            auth,
            admin,
        }
    }

    async fn register(&mut self, tag: &str) -> Account {
        register_account(&mut self.auth, &email(tag), tag).await
    }

    fn caller(&self, token: &str) -> Caller {
        Caller {
            client: ProfileServiceClient::new(self.channel.clone()),
            token: token.to_owned(),
        }
    }

    fn admin(&self) -> Caller {
        self.caller(&self.admin.tokens.access_token)
    }

    async fn validate(&mut self, token: &str) -> ValidateTokenResponse {
        self.auth
            .validate_token(ValidateTokenRequest {
                access_token: token.into(),
            })
            .await
            .expect("ValidateToken answers")
            .into_inner()
    }

    async fn login(&mut self, address: &str, password: &str) -> Result<TokenPair, Status> {
        let response = self
            .auth
            .login(LoginRequest {
                email: address.into(),
                password: password.into(),
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().tokens.expect("login returns tokens"))
    }

    async fn refresh(&mut self, refresh_token: &str) -> Result<TokenPair, Status> {
        let response = self
            .auth
            .refresh(RefreshRequest {
                refresh_token: refresh_token.into(),
            })
            .await?;
        Ok(response
            .into_inner()
            .tokens
            .expect("refresh returns tokens"))
    }
}

async fn register_account(
    auth: &mut AuthServiceClient<Channel>,
    address: &str,
    display_name: &str,
) -> Account {
    let registered = auth
        .register(RegisterRequest {
            email: address.into(),
            password: PASSWORD.into(),
            display_name: display_name.into(),
        })
        .await
        .expect("registers")
        .into_inner();
    Account {
        email: address.to_owned(),
        password: PASSWORD.to_owned(),
        profile: registered.profile.expect("register returns the profile"),
        tokens: registered.tokens.expect("register returns tokens"),
    }
}

// ---------------------------------------------------------------------------
// 1. Owner and admin rules

async fn owners_manage_themselves_and_only_admins_reach_other_profiles(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let admin_token = w.admin.tokens.access_token.clone();
    let claims = w.validate(&admin_token).await;
    assert!(
        claims.roles.iter().any(|r| r == ADMIN),
        "the bootstrap admin's tokens carry the role: {claims:?}"
    );

    let ann_account = w.register("ann").await;
    let bob_account = w.register("bob").await;
    assert!(
        !has_role(&ann_account.profile, ADMIN),
        "only listed emails become admins"
    );
    let ann_token = ann_account.tokens.access_token.clone();
    assert!(
        !w.validate(&ann_token)
            .await
            .roles
            .iter()
            .any(|r| r == ADMIN)
    );
    let ann = w.caller(&ann_token);
    let ann_id = ann_account.profile.id.clone();
    let bob_id = bob_account.profile.id.clone();

    // The owner reads itself by id, as `me`, and by (local, id).
    let me = ann.get("me").await.expect("GetProfile(me)");
    assert_eq!(me.id, ann_id);
    assert_eq!(me.auth_provider, "local");
    assert_eq!(me.auth_id, ann_id, "a local account's auth_id is its id");
    assert_eq!(me.email, ann_account.email);
    assert!(!me.etag.is_empty(), "profiles carry an etag");
    assert_eq!(ann.get(&ann_id).await.unwrap(), me);
    assert_eq!(ann.lookup("local", &ann_id).await.unwrap(), me);

    // A malformed id is a client error naming the field.
    for bad in [
        "not-a-uuid",
        "'; DROP TABLE profiles; --",
        "../admin",
        "ME ",
    ] {
        let status = ann.get(bad).await.unwrap_err();
        assert_invalid(&status, "id", &format!("GetProfile({bad:?})"));
    }

    // Bob's profile, as the admin sees it before Ann tries anything.
    let bob_before = admin.get(&bob_id).await.expect("admin reads bob");

    // Ann cannot see Bob, and cannot tell Bob from nobody.
    assert_same_as_missing(
        ann.get(&bob_id).await.unwrap_err(),
        ann.get(&random_id()).await.unwrap_err(),
        "GetProfile",
    );
    assert_same_as_missing(
        ann.lookup("local", &bob_id).await.unwrap_err(),
        ann.lookup("local", &random_id()).await.unwrap_err(),
        "LookupProfile",
    );
    let hijack = |id: &str| UserProfile {
        id: id.to_owned(),
        etag: bob_before.etag.clone(),
        display_name: "Hijacked".into(),
        email: email("hijack"),
        ..Default::default()
    };
    assert_same_as_missing(
        ann.update(hijack(&bob_id), &["display_name"])
            .await
            .unwrap_err(),
        ann.update(hijack(&random_id()), &["display_name"])
            .await
            .unwrap_err(),
        "UpdateProfile(display_name)",
    );
    assert_same_as_missing(
        ann.update(hijack(&bob_id), &["email"]).await.unwrap_err(),
        ann.update(hijack(&random_id()), &["email"])
            .await
            .unwrap_err(),
        "UpdateProfile(email)",
    );
    assert_same_as_missing(
        ann.delete(&bob_id, &bob_before.etag).await.unwrap_err(),
        ann.delete(&random_id(), &bob_before.etag)
            .await
            .unwrap_err(),
        "DeleteProfile with etag",
    );
    assert_same_as_missing(
        ann.delete(&bob_id, "").await.unwrap_err(),
        ann.delete(&random_id(), "").await.unwrap_err(),
        "DeleteProfile without etag",
    );
    assert_eq!(
        admin.get(&bob_id).await.expect("bob survived"),
        bob_before,
        "nothing Ann tried changed Bob"
    );

    // Listing and creating are admin-only.
    let status = ann.list(0, "", "").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = ann
        .list(10, "", r#"auth_provider="local""#)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = ann
        .create(external("test-idp", "made-by-ann"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        admin
            .lookup("test-idp", "made-by-ann")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Ann cannot grant herself admin, alone or hidden behind another path.
    for paths in [&["roles"][..], &["display_name", "roles"][..]] {
        let grab = UserProfile {
            display_name: "Ann The Admin".into(),
            roles: vec![ADMIN.into()],
            ..target(&me)
        };
        let status = ann.update(grab.clone(), paths).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{paths:?}: {status:?}"
        );
        let status = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    ..grab
                },
                paths,
            )
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{paths:?}: {status:?}"
        );
    }
    assert_eq!(
        ann.get("me").await.unwrap(),
        me,
        "the refusals changed nothing"
    );
    assert!(
        !w.validate(&ann_token)
            .await
            .roles
            .iter()
            .any(|r| r == ADMIN)
    );

    // Ann updates herself, by `me`.
    let updated = ann
        .update(
            UserProfile {
                id: "me".into(),
                etag: me.etag.clone(),
                display_name: "Ann Updated".into(),
                locale: "en-GB".into(),
                avatar_url: "https://cdn.example.com/ann.png".into(),
                ..Default::default()
            },
            &["display_name", "locale", "avatar_url"],
        )
        .await
        .expect("the owner updates itself");
    assert_eq!(updated.id, ann_id);
    assert_eq!(updated.display_name, "Ann Updated");
    assert_eq!(updated.locale, "en-GB");
    assert_eq!(updated.avatar_url, "https://cdn.example.com/ann.png");
    assert_ne!(updated.etag, me.etag, "the etag changes on update");
    assert!(time(&updated.update_time) >= time(&me.update_time));
    assert_eq!(time(&updated.create_time), time(&me.create_time));
    let reread = ann.get("me").await.unwrap();
    assert_eq!(
        reread.etag, updated.etag,
        "the returned etag is the stored one"
    );
    assert_eq!(reread.display_name, "Ann Updated");

    // The admin reads, looks up, lists and changes anyone.
    assert_eq!(admin.get(&ann_id).await.unwrap(), reread);
    assert_eq!(admin.lookup("local", &bob_id).await.unwrap(), bob_before);
    let listed: HashSet<String> = admin
        .list_all(0, "")
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    for id in [&w.admin.profile.id, &ann_id, &bob_id] {
        assert!(listed.contains(id), "the admin's listing misses {id}");
    }
    let bob_email = email("bob.renamed");
    let bob_after = admin
        .update(
            UserProfile {
                display_name: "Bob By Admin".into(),
                email: bob_email.clone(),
                roles: vec!["support".into(), "billing".into()],
                ..target(&bob_before)
            },
            &["display_name", "email", "roles"],
        )
        .await
        .expect("the admin updates another user");
    assert_eq!(bob_after.display_name, "Bob By Admin");
    assert_eq!(bob_after.email, bob_email);
    assert_eq!(sorted(bob_after.roles.clone()), ["billing", "support"]);
    assert_ne!(bob_after.etag, bob_before.etag);

    // The admin creates profiles; id, times and etag are the server's.
    let forged_id = random_id();
    let created = admin
        .create(UserProfile {
            id: forged_id.clone(),
            etag: "forged-etag".into(),
            create_time: Some(Timestamp {
                seconds: 946_684_800,
                nanos: 0,
            }),
            update_time: Some(Timestamp {
                seconds: 946_684_800,
                nanos: 0,
            }),
            roles: vec!["reader".into()],
            avatar_url: "https://cdn.example.com/ext.png".into(),
            ..external("test-idp", "ext-1")
        })
        .await
        .expect("the admin creates a profile");
    assert_ne!(created.id, forged_id, "the server assigns the id");
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{}", created.id);
    assert_ne!(created.etag, "forged-etag");
    assert!(!created.etag.is_empty());
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - time(&created.create_time).0).abs() < 300,
        "create_time is the server's: {:?}",
        created.create_time
    );
    assert_eq!(
        (created.auth_provider.as_str(), created.auth_id.as_str()),
        ("test-idp", "ext-1")
    );
    assert_eq!(created.roles, ["reader"]);
    assert_eq!(created.avatar_url, "https://cdn.example.com/ext.png");
    let read = admin.get(&created.id).await.unwrap();
    assert_eq!(
        read.etag, created.etag,
        "the returned etag is the stored one"
    );
    assert_eq!(admin.lookup("test-idp", "ext-1").await.unwrap(), read);

    // Owners and admins delete.
    ann.delete(&ann_id, &reread.etag)
        .await
        .expect("the owner deletes itself");
    assert_eq!(admin.get(&ann_id).await.unwrap_err().code(), Code::NotFound);
    admin
        .delete(&bob_id, &bob_after.etag)
        .await
        .expect("the admin deletes another user");
    assert_eq!(admin.get(&bob_id).await.unwrap_err().code(), Code::NotFound);
    admin
        .delete(&created.id, "")
        .await
        .expect("the admin deletes without an etag");
    assert_eq!(
        admin.lookup("test-idp", "ext-1").await.unwrap_err().code(),
        Code::NotFound
    );
}

// ---------------------------------------------------------------------------
// 2. Authentication on every RPC

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

fn eddsa_header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".into());
    header
}

fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
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

// ---------------------------------------------------------------------------
// 3. Etags and update masks

async fn stale_etags_abort_and_bad_update_masks_are_invalid(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let account = w.register("etag").await;
    let ann = w.caller(&account.tokens.access_token);
    let v0 = ann.get("me").await.unwrap();

    let v1 = ann
        .update(
            UserProfile {
                display_name: "First".into(),
                ..target(&v0)
            },
            &["display_name"],
        )
        .await
        .expect("an update with the current etag");
    assert_ne!(v1.etag, v0.etag);
    assert!(time(&v1.update_time) >= time(&v0.update_time));
    let v1 = ann.get("me").await.unwrap();
    assert_eq!(v1.display_name, "First");

    // A stale etag is ABORTED and changes nothing, for the owner and the admin.
    let status = ann
        .update(
            UserProfile {
                display_name: "Second".into(),
                ..target(&v0)
            },
            &["display_name"],
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    for etag in ["made-up", "W/\"1\"", "0", "\"\"", &v1.etag.repeat(2)] {
        let status = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    etag: etag.into(),
                    display_name: "Second".into(),
                    ..Default::default()
                },
                &["display_name"],
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "etag {etag:?}: {status:?}");
    }
    let status = admin
        .update(
            UserProfile {
                display_name: "By Admin".into(),
                roles: vec!["support".into()],
                ..target(&v0)
            },
            &["display_name", "roles"],
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    // An absent etag never matches either (ABORTED, or refused as missing).
    let status = ann
        .update(
            UserProfile {
                id: "me".into(),
                display_name: "Second".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::Aborted | Code::InvalidArgument),
        "{status:?}"
    );
    assert_eq!(ann.get("me").await.unwrap(), v1, "nothing changed");

    // Immutable, unknown and empty masks are INVALID_ARGUMENT on update_mask.
    let everything = UserProfile {
        id: v1.id.clone(),
        etag: v1.etag.clone(),
        auth_provider: "evil-idp".into(),
        auth_id: "someone-else".into(),
        email: email("masked"),
        display_name: "Masked".into(),
        avatar_url: "https://cdn.example.com/masked.png".into(),
        locale: "fr".into(),
        roles: vec![],
        create_time: Some(Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        update_time: Some(Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        email_verified: true,
    };
    let refused = [
        "id",
        "email_verified",
        "auth_provider",
        "auth_id",
        "create_time",
        "update_time",
        "etag",
        "nickname",
        "password",
        "display_name.first",
        "DISPLAY_NAME",
        "*",
        "",
    ];
    for path in refused {
        for paths in [vec![path], vec!["display_name", path]] {
            let status = ann.update(everything.clone(), &paths).await.unwrap_err();
            assert_invalid(&status, "update_mask", &format!("mask {paths:?}"));
        }
    }
    for request in [
        UpdateProfileRequest {
            profile: Some(everything.clone()),
            update_mask: Some(mask(&[])),
        },
        UpdateProfileRequest {
            profile: Some(everything.clone()),
            update_mask: None,
        },
    ] {
        let status = ann.update_request(request).await.unwrap_err();
        assert_invalid(&status, "update_mask", "empty mask");
    }
    assert_eq!(ann.get("me").await.unwrap(), v1, "nothing changed");

    // Only the masked paths change, even when the message carries more.
    let v2 = ann
        .update(everything.clone(), &["locale"])
        .await
        .expect("mask [locale]");
    let v2_read = ann.get("me").await.unwrap();
    assert_eq!(v2_read.etag, v2.etag);
    assert_eq!(v2_read.locale, "fr");
    assert_eq!(
        UserProfile {
            locale: v1.locale.clone(),
            etag: v1.etag.clone(),
            update_time: v1.update_time,
            ..v2_read.clone()
        },
        v1,
        "only locale (and etag, update_time) changed"
    );
    assert!(time(&v2_read.update_time) >= time(&v1.update_time));

    let v3 = ann
        .update(
            UserProfile {
                id: "me".into(),
                etag: v2_read.etag.clone(),
                ..everything.clone()
            },
            &["display_name", "avatar_url"],
        )
        .await
        .expect("mask [display_name, avatar_url]");
    let v3_read = ann.get("me").await.unwrap();
    assert_eq!(v3_read.etag, v3.etag);
    assert_eq!(v3_read.display_name, "Masked");
    assert_eq!(v3_read.avatar_url, "https://cdn.example.com/masked.png");
    assert_eq!(v3_read.email, v2_read.email, "an owner's login email stays");
    assert_eq!(v3_read.locale, "fr");
    assert_eq!(v3_read.id, v1.id);
    assert_eq!(v3_read.auth_provider, "local");
    assert_eq!(v3_read.auth_id, v1.id);
    assert_eq!(time(&v3_read.create_time), time(&v0.create_time));
    assert!(time(&v3_read.update_time) >= time(&v2_read.update_time));

    // Even an update to the same value is a new version.
    let v4 = ann
        .update(
            UserProfile {
                display_name: "Masked".into(),
                ..target(&v3_read)
            },
            &["display_name"],
        )
        .await
        .expect("same value again");
    let etags: HashSet<&str> = [&v0, &v1, &v2_read, &v3_read, &v4]
        .iter()
        .map(|p| p.etag.as_str())
        .collect();
    assert_eq!(etags.len(), 5, "every successful update makes a new etag");
    assert!(time(&v4.update_time) >= time(&v3_read.update_time));
}

// ---------------------------------------------------------------------------
// 3b. Field validation

async fn each_invalid_profile_field_is_named_and_nothing_changes(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let account = w.register("valid").await;
    let ann = w.caller(&account.tokens.access_token);
    let mut current = ann.get("me").await.unwrap();

    let long_https = |total: usize| {
        let base = "https://cdn.example.com/";
        format!("{base}{}", "a".repeat(total - base.len()))
    };
    let refused: Vec<(&str, &str, UserProfile)> = vec![
        (
            "empty display name",
            "display_name",
            UserProfile {
                display_name: String::new(),
                ..Default::default()
            },
        ),
        (
            "101 characters",
            "display_name",
            UserProfile {
                display_name: "n".repeat(101),
                ..Default::default()
            },
        ),
        (
            "101 two-byte characters",
            "display_name",
            UserProfile {
                display_name: "é".repeat(101),
                ..Default::default()
            },
        ),
        (
            "escape sequence",
            "display_name",
            UserProfile {
                display_name: "Ann\u{1b}[31m".into(),
                ..Default::default()
            },
        ),
        (
            "tab",
            "display_name",
            UserProfile {
                display_name: "Ann\tLee".into(),
                ..Default::default()
            },
        ),
        (
            "newline",
            "display_name",
            UserProfile {
                display_name: "Ann\nLee".into(),
                ..Default::default()
            },
        ),
        (
            "NUL",
            "display_name",
            UserProfile {
                display_name: "Ann\u{0}".into(),
                ..Default::default()
            },
        ),
        (
            "http avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "http://cdn.example.com/a.png".into(),
                ..Default::default()
            },
        ),
        (
            "relative avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "/a.png".into(),
                ..Default::default()
            },
        ),
        (
            "scheme-relative avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "//cdn.example.com/a.png".into(),
                ..Default::default()
            },
        ),
        (
            "no host",
            "avatar_url",
            UserProfile {
                avatar_url: "https://".into(),
                ..Default::default()
            },
        ),
        (
            "javascript avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "javascript:alert(1)".into(),
                ..Default::default()
            },
        ),
        (
            "data avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "data:image/png;base64,AAAA".into(),
                ..Default::default()
            },
        ),
        (
            "2049-byte avatar",
            "avatar_url",
            UserProfile {
                avatar_url: long_https(2049),
                ..Default::default()
            },
        ),
        (
            "english!",
            "locale",
            UserProfile {
                locale: "english!".into(),
                ..Default::default()
            },
        ),
        (
            "single letter locale",
            "locale",
            UserProfile {
                locale: "e".into(),
                ..Default::default()
            },
        ),
        (
            "underscore locale",
            "locale",
            UserProfile {
                locale: "en_GB".into(),
                ..Default::default()
            },
        ),
        (
            "trailing hyphen",
            "locale",
            UserProfile {
                locale: "en-".into(),
                ..Default::default()
            },
        ),
        (
            "not an email",
            "email",
            UserProfile {
                email: "not-an-email".into(),
                ..Default::default()
            },
        ),
        (
            "no domain",
            "email",
            UserProfile {
                email: "ann@".into(),
                ..Default::default()
            },
        ),
        (
            "no local part",
            "email",
            UserProfile {
                email: "@example.com".into(),
                ..Default::default()
            },
        ),
        (
            "space in email",
            "email",
            UserProfile {
                email: "ann lee@example.com".into(),
                ..Default::default()
            },
        ),
    ];
    for (case, field, values) in refused {
        let status = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    etag: current.etag.clone(),
                    ..values
                },
                &[field],
            )
            .await
            .unwrap_err();
        assert_invalid(&status, &format!("profile.{field}"), case);
    }
    assert_eq!(ann.get("me").await.unwrap(), current, "nothing changed");

    // Several bad fields are all named.
    let status = ann
        .update(
            UserProfile {
                display_name: String::new(),
                avatar_url: "http://x.example/".into(),
                locale: "e".into(),
                ..target(&current)
            },
            &["display_name", "avatar_url", "locale"],
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let named: HashSet<String> = violated_fields(&status).into_iter().collect();
    let expected: HashSet<String> = [
        "profile.display_name",
        "profile.avatar_url",
        "profile.locale",
    ]
    .map(String::from)
    .into();
    assert_eq!(named, expected, "{status:?}");

    // The limits themselves are allowed.
    let accepted = [
        (
            "100 two-byte characters",
            "display_name",
            UserProfile {
                display_name: "é".repeat(100),
                ..Default::default()
            },
        ),
        (
            "2048-byte avatar",
            "avatar_url",
            UserProfile {
                avatar_url: long_https(2048),
                ..Default::default()
            },
        ),
        (
            "en",
            "locale",
            UserProfile {
                locale: "en".into(),
                ..Default::default()
            },
        ),
        (
            "en-GB",
            "locale",
            UserProfile {
                locale: "en-GB".into(),
                ..Default::default()
            },
        ),
        (
            "zh-Hant-TW",
            "locale",
            UserProfile {
                locale: "zh-Hant-TW".into(),
                ..Default::default()
            },
        ),
    ];
    for (case, field, values) in accepted {
        let sent = values.clone();
        let updated = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    etag: current.etag.clone(),
                    ..values
                },
                &[field],
            )
            .await
            .unwrap_or_else(|s| panic!("{case}: refused: {s:?}"));
        current = ann.get("me").await.unwrap();
        assert_eq!(current.etag, updated.etag, "{case}");
        let (got, want) = match field {
            "display_name" => (&current.display_name, &sent.display_name),
            "avatar_url" => (&current.avatar_url, &sent.avatar_url),
            _ => (&current.locale, &sent.locale),
        };
        assert_same_bytes(got, want, case);
    }

    // Roles (admin only): lowercase names of a-z, 0-9, _ and -, 1-32 long.
    let profile = admin.get(&current.id).await.unwrap();
    let too_long = "r".repeat(33);
    for (case, roles) in [
        ("upper case", vec!["Admin"]),
        ("space", vec!["has space"]),
        ("empty", vec![""]),
        ("33 characters", vec![too_long.as_str()]),
        ("one bad among good", vec!["support", "BAD"]),
        ("punctuation", vec!["admin;"]),
        ("non-ascii", vec!["ädmin"]),
    ] {
        let status = admin
            .update(
                UserProfile {
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    ..target(&profile)
                },
                &["roles"],
            )
            .await
            .unwrap_err();
        assert_invalid(&status, "profile.roles", case);
    }
    let good = vec![
        "support".to_owned(),
        "billing_ops".to_owned(),
        "team-7".to_owned(),
        "r".repeat(32),
    ];
    let updated = admin
        .update(
            UserProfile {
                roles: good.clone(),
                ..target(&profile)
            },
            &["roles"],
        )
        .await
        .expect("valid roles");
    assert_eq!(sorted(updated.roles), sorted(good.clone()));
    assert_eq!(
        sorted(admin.get(&profile.id).await.unwrap().roles),
        sorted(good)
    );

    // CreateProfile: the pair is required and bounded, violations named.
    let max = "p".repeat(255);
    let over = "p".repeat(256);
    for (case, provider, auth_id, field) in [
        ("empty provider", "", "some-id", "profile.auth_provider"),
        ("empty auth_id", "test-idp", "", "profile.auth_id"),
        (
            "256-byte provider",
            over.as_str(),
            "some-id",
            "profile.auth_provider",
        ),
        (
            "256-byte auth_id",
            "test-idp",
            over.as_str(),
            "profile.auth_id",
        ),
    ] {
        let status = admin.create(external(provider, auth_id)).await.unwrap_err();
        assert_invalid(&status, field, case);
    }
    let status = admin
        .create(UserProfile {
            locale: "english!".into(),
            ..external("", "")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let named: HashSet<String> = violated_fields(&status).into_iter().collect();
    for field in ["profile.auth_provider", "profile.auth_id", "profile.locale"] {
        assert!(named.contains(field), "{field} not named: {status:?}");
    }
    let created = admin
        .create(external(&max, &max))
        .await
        .expect("255 bytes are allowed");
    assert_eq!(admin.lookup(&max, &max).await.unwrap().id, created.id);
    assert!(
        admin
            .list_all(0, r#"auth_provider="test-idp""#)
            .await
            .is_empty(),
        "the refused creates stored nothing"
    );
}

// ---------------------------------------------------------------------------
// 4. Deletion

async fn deleting_a_profile_ends_its_sessions_and_its_login(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let doomed = w.register("doomed").await;
    let second = w
        .login(&doomed.email, &doomed.password)
        .await
        .expect("a second session");
    let owner = w.caller(&doomed.tokens.access_token);
    let v0 = owner.get("me").await.unwrap();
    let v1 = owner
        .update(
            UserProfile {
                display_name: "Still Here".into(),
                ..target(&v0)
            },
            &["display_name"],
        )
        .await
        .unwrap();

    // A stale or made-up etag refuses the delete.
    for etag in [v0.etag.as_str(), "made-up"] {
        let status = owner.delete(&v0.id, etag).await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "etag {etag:?}: {status:?}");
    }
    assert_eq!(owner.get("me").await.unwrap().etag, v1.etag, "still there");

    owner
        .delete(&v0.id, &v1.etag)
        .await
        .expect("the owner deletes itself with the current etag");

    for (session, tokens) in [("registration", &doomed.tokens), ("login", &second)] {
        assert!(
            !w.validate(&tokens.access_token).await.active,
            "{session}: the access token is inactive"
        );
        let status = w.refresh(&tokens.refresh_token).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{session}: {status:?}"
        );
    }
    let status = w.login(&doomed.email, &doomed.password).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(admin.get(&v0.id).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        admin.lookup("local", &v0.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        admin.delete(&v0.id, "").await.unwrap_err().code(),
        Code::NotFound
    );
    let status = owner.get("me").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        !admin.list_all(0, "").await.iter().any(|p| p.id == v0.id),
        "the deleted profile is not listed"
    );

    // Its local credential went with it: the email is free again, for a new
    // account with a new id.
    let again = register_account(&mut w.auth, &doomed.email, "Reborn").await;
    assert_ne!(again.profile.id, v0.id);
    assert!(!w.validate(&second.access_token).await.active);

    // An admin deleting someone else (no etag) has the same effect.
    let bob = w.register("bob").await;
    admin
        .delete(&bob.profile.id, "")
        .await
        .expect("the admin deletes bob");
    assert!(!w.validate(&bob.tokens.access_token).await.active);
    let status = w.refresh(&bob.tokens.refresh_token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = w.login(&bob.email, &bob.password).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        w.validate(&w.admin.tokens.access_token.clone())
            .await
            .active
    );
}

// ---------------------------------------------------------------------------
// 5. Pagination

/// Creates one profile per auth_id, `batch` at a time; returns their ids.
async fn create_many(
    admin: &Caller,
    provider: &str,
    auth_ids: Vec<String>,
    batch: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(auth_ids.len());
    for chunk in auth_ids.chunks(batch) {
        let calls = chunk.iter().map(|auth_id| {
            let admin = admin.clone();
            let profile = external(provider, auth_id);
            async move { admin.create(profile).await }
        });
        for (auth_id, result) in chunk.iter().zip(futures::future::join_all(calls).await) {
            let created = result.unwrap_or_else(|s| panic!("create {auth_id}: {s:?}"));
            ids.push(created.id);
        }
    }
    ids
}

#[track_caller]
fn assert_refused_or_empty(result: Result<ListProfilesResponse, Status>, field: &str, case: &str) {
    match result {
        Ok(page) => assert!(
            page.profiles.is_empty(),
            "{case}: matched {} profiles",
            page.profiles.len()
        ),
        Err(status) => assert_invalid(&status, field, case),
    }
}

async fn a_paginated_walk_sees_every_profile_once_despite_concurrent_inserts(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();
    let filter = r#"auth_provider="test-idp""#;
    let first = create_many(
        &admin,
        "test-idp",
        (0..250).map(|i| format!("user-{i:03}")).collect(),
        25,
    )
    .await;
    assert_eq!(first.iter().collect::<HashSet<_>>().len(), 250);

    // Walk with page_size 7 while another task inserts 50 more.
    let inserter = tokio::spawn({
        let admin = admin.clone();
        async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let created = admin
                    .create(external("test-idp", &format!("late-{i:02}")))
                    .await
                    .expect("concurrent create");
                ids.push(created.id);
            }
            ids
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = admin.list(7, &token, filter).await.expect("a page");
        assert!(page.profiles.len() <= 7, "page of {}", page.profiles.len());
        for profile in page.profiles {
            assert_eq!(profile.auth_provider, "test-idp", "the filter holds");
            seen.push(profile.id);
        }
        pages += 1;
        assert!(pages <= 60, "the walk does not end");
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let late = inserter.await.expect("the inserter finished");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &seen {
        *counts.entry(id).or_default() += 1;
    }
    for id in &first {
        assert_eq!(
            counts.get(id.as_str()),
            Some(&1),
            "profile {id} seen {:?} times",
            counts.get(id.as_str())
        );
    }
    let known: HashSet<&str> = first.iter().chain(&late).map(String::as_str).collect();
    for (id, count) in &counts {
        assert_eq!(*count, 1, "{id} seen {count} times");
        assert!(known.contains(id), "{id} is not a test-idp profile");
    }

    // A quiet walk sees all 300 once, in the same order as before.
    let quiet: Vec<String> = admin
        .list_all(7, filter)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(quiet.len(), 300);
    assert_eq!(quiet.iter().collect::<HashSet<_>>().len(), 300);
    let order = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .filter(|id| first.contains(id))
            .cloned()
            .collect()
    };
    assert_eq!(order(&seen), order(&quiet), "the order is stable");

    // Page sizes: default 50, clamped at 100, negative refused.
    let page = admin.list(0, "", filter).await.unwrap();
    assert_eq!(page.profiles.len(), 50, "default page size");
    assert!(!page.next_page_token.is_empty());
    let page = admin.list(1000, "", filter).await.unwrap();
    assert_eq!(page.profiles.len(), 100, "page_size is clamped to 100");
    assert!(!page.next_page_token.is_empty());
    for size in [-1, i32::MIN] {
        let status = admin.list(size, "", filter).await.unwrap_err();
        assert_invalid(&status, "page_size", &format!("page_size {size}"));
    }

    // Page tokens cannot be edited or moved to another query.
    let token = admin.list(7, "", filter).await.unwrap().next_page_token;
    let unfiltered = admin.list(7, "", "").await.unwrap().next_page_token;
    assert!(!token.is_empty() && !unfiltered.is_empty());
    let flip = |at: usize| {
        let mut chars: Vec<char> = token.chars().collect();
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    let mut forged: Vec<(&str, String, &str)> = vec![
        ("first character flipped", flip(0), filter),
        (
            "middle character flipped",
            flip(token.chars().count() / 2),
            filter,
        ),
        (
            "last character flipped",
            flip(token.chars().count() - 1),
            filter,
        ),
        ("truncated", token[..token.len() - 2].to_owned(), filter),
        ("prefixed", format!("AAAA{token}"), filter),
        ("garbage", "not-a-page-token".into(), filter),
        ("10 KB", "A".repeat(10 * 1024), filter),
        (
            "unfiltered token under a filter",
            unfiltered.clone(),
            filter,
        ),
        ("filtered token without the filter", token.clone(), ""),
        (
            "filtered token under another filter",
            token.clone(),
            r#"auth_provider="local""#,
        ),
    ];
    if let Some(at) = token.find('.') {
        // A token of the shape payload.tag: flip inside the payload too.
        forged.push(("payload character flipped", flip(at / 2), filter));
        // Keeping a prefix of the tag must not do: a short tag is guessable.
        forged.push(("tag cut short", token[..token.len() - 4].to_owned(), filter));
        forged.push(("tag cut to one byte", token[..at + 3].to_owned(), filter));
    }
    for (case, bad, query) in forged {
        match admin.list(7, &bad, query).await {
            Err(status) => assert_invalid(&status, "page_token", case),
            Ok(page) => panic!(
                "{case}: page token {bad:?} accepted under {query:?}, giving {:?}",
                page.profiles.iter().map(|p| &p.auth_id).collect::<Vec<_>>()
            ),
        }
    }
    let page = admin
        .list(7, &token, filter)
        .await
        .expect("the real token still works");
    assert_eq!(page.profiles.len(), 7);

    // Filters: exactly auth_provider="<name>"; anything else is refused.
    let local = admin.list_all(0, r#"auth_provider="local""#).await;
    assert_eq!(local.len(), 1, "only the admin is local");
    assert_eq!(local[0].id, w.admin.profile.id);
    assert!(
        admin.list_all(0, "").await.len() >= 301,
        "no filter lists everyone"
    );
    for bad in [
        "auth_provider='test-idp'",
        "auth_provider=test-idp",
        r#"email="someone@example.com""#,
        r#"auth_id="user-001""#,
        "garbage",
        r#"auth_provider="test-idp" OR 1=1"#,
        r#"auth_provider="test-idp"; DROP TABLE profiles; --"#,
        r#"auth_provider~"test""#,
        r#"auth_provider="test-idp"#,
    ] {
        let status = admin.list(10, "", bad).await.unwrap_err();
        assert_invalid(&status, "filter", bad);
    }
    // Quoted values are literal names, never patterns or SQL.
    for literal in [
        r#"auth_provider="%""#,
        r#"auth_provider="test_idp""#,
        r#"auth_provider="test-idp%""#,
        r#"auth_provider="x' OR '1'='1""#,
        r#"auth_provider="x" OR auth_provider="test-idp""#,
    ] {
        assert_refused_or_empty(admin.list(10, "", literal).await, "filter", literal);
    }
    assert_eq!(admin.list_all(100, filter).await.len(), 300, "still intact");
}

// ---------------------------------------------------------------------------
// 6. Hostile strings

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Valid by the contract: must be stored byte for byte.
    Accept,
    /// Invalid by the contract: must be refused, naming the field.
    Refuse,
    /// Either stored byte for byte or refused naming the field.
    Either,
}

fn hostile_strings() -> Vec<(&'static str, String)> {
    vec![
        ("double quotes", r#"say "cheese""#.into()),
        ("single quote", "O'Brien".into()),
        ("sql comment injection", "'; DROP TABLE profiles; --".into()),
        ("sql quoted injection", r#"" OR ""=""#.into()),
        ("sql union", "x' UNION SELECT * FROM profiles --".into()),
        ("percent", "100%".into()),
        ("lone percent", "%".into()),
        ("lone underscore", "_".into()),
        ("like pattern", "a%b_c".into()),
        ("backslashes", r"C:\new\table\\x".into()),
        ("escaped quotes", r#"\'\"\\"#.into()),
        ("emoji", "👩🏽‍💻 Ann 🎉".into()),
        ("combining accent", "Rene\u{301}e".into()),
        ("rtl mark", "abc\u{200f}def".into()),
        ("rtl override", "\u{202e}gpj.exe".into()),
        ("byte order mark", "\u{feff}bom".into()),
        ("html", "<script>alert(1)</script>".into()),
        ("json", r#"{"$ne": null}"#.into()),
        ("nul", "a\u{0}b".into()),
        ("escape sequence", "\u{1b}[31mred".into()),
        ("newline", "two\nlines".into()),
        ("carriage return", "two\rlines".into()),
        ("delete", "del\u{7f}".into()),
        ("c1 control", "next\u{85}line".into()),
        ("10 KB ascii", "x".repeat(10 * 1024)),
        ("10 KB quotes", "'\"".repeat(5 * 1024)),
        ("10 KB two-byte", "é".repeat(5 * 1024)),
        ("100 four-byte characters", "😀".repeat(100)),
        ("CaseSensitive", "CaseSensitive".into()),
    ]
}

/// Bidirectional controls and the byte order mark: printable by the letter
/// of "no control characters", so an implementation may take or refuse them.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn display_name_rule(value: &str) -> Expect {
    if value.is_empty() || value.chars().count() > 100 || value.chars().any(char::is_control) {
        Expect::Refuse
    } else if value.chars().any(is_format_char) {
        Expect::Either
    } else {
        Expect::Accept
    }
}

fn auth_id_rule(value: &str) -> Expect {
    if value.is_empty() || value.len() > 255 {
        Expect::Refuse
    } else if value.chars().any(|c| c.is_control() || is_format_char(c)) {
        Expect::Either
    } else {
        Expect::Accept
    }
}

/// Checks one outcome; returns the stored profile when it was accepted.
#[track_caller]
fn judge(
    case: &str,
    field: &str,
    expect: Expect,
    result: Result<UserProfile, Status>,
) -> Option<UserProfile> {
    match result {
        Ok(stored) => {
            assert_ne!(expect, Expect::Refuse, "{field} {case}: accepted");
            Some(stored)
        }
        Err(status) => {
            assert_ne!(
                expect,
                Expect::Accept,
                "{field} {case}: refused: {status:?}"
            );
            assert_invalid(
                &status,
                &format!("profile.{field}"),
                &format!("{field} {case}"),
            );
            None
        }
    }
}

async fn hostile_strings_round_trip_byte_for_byte_or_are_refused_by_name(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let account = w.register("hostile").await;
    let owner = w.caller(&account.tokens.access_token);
    let mut current = owner.get("me").await.unwrap();

    // display_name, set by the owner.
    for (case, value) in hostile_strings() {
        let result = owner
            .update(
                UserProfile {
                    display_name: value.clone(),
                    ..target(&current)
                },
                &["display_name"],
            )
            .await;
        let stored = judge(case, "display_name", display_name_rule(&value), result);
        let now = owner.get("me").await.unwrap();
        match stored {
            Some(stored) => {
                assert_same_bytes(&stored.display_name, &value, case);
                assert_same_bytes(&now.display_name, &value, case);
                assert_same_bytes(
                    &admin.get(&now.id).await.unwrap().display_name,
                    &value,
                    case,
                );
                current = now;
            }
            None => assert_eq!(now, current, "{case}: a refusal changed nothing"),
        }
    }

    // auth_id, through CreateProfile, read back by id and by lookup.
    let mut accepted: HashSet<String> = HashSet::new();
    for (case, value) in hostile_strings() {
        let result = admin
            .create(UserProfile {
                display_name: "Hostile".into(),
                ..external("hostile-idp", &value)
            })
            .await;
        match judge(case, "auth_id", auth_id_rule(&value), result) {
            Some(stored) => {
                assert_same_bytes(&stored.auth_id, &value, case);
                assert_same_bytes(&admin.get(&stored.id).await.unwrap().auth_id, &value, case);
                let found = admin
                    .lookup("hostile-idp", &value)
                    .await
                    .unwrap_or_else(|s| panic!("lookup {case}: {s:?}"));
                assert_eq!(found.id, stored.id, "lookup {case}");
                accepted.insert(stored.id);
            }
            None => {
                let status = admin.lookup("hostile-idp", &value).await.unwrap_err();
                assert!(
                    matches!(status.code(), Code::NotFound | Code::InvalidArgument),
                    "lookup of refused {case}: {status:?}"
                );
            }
        }
    }
    // Lookups compare exactly: no wildcards, no case folding, no trimming.
    for probe in [
        "%%",
        "1_0%",
        "a%",
        "_%",
        "%b_c",
        "a_b%c",
        "casesensitive",
        "CASESENSITIVE",
        "O''Brien",
        "%'; DROP TABLE profiles; --",
    ] {
        let status = admin.lookup("hostile-idp", probe).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "lookup {probe:?}: {status:?}"
        );
    }
    for probe in ["%", "_"] {
        let status = admin.lookup(probe, "%").await.unwrap_err();
        assert!(
            matches!(status.code(), Code::NotFound | Code::InvalidArgument),
            "provider {probe:?}: {status:?}"
        );
    }

    // avatar_url, set by the owner.
    let base = "https://cdn.example.com/";
    let avatars: Vec<(&str, String, Expect)> = vec![
        (
            "plain",
            format!("{base}a_b%20c.png?x=1&y=%25#frag"),
            Expect::Accept,
        ),
        ("single quote", format!("{base}o'brien.png"), Expect::Either),
        (
            "double quote",
            format!("{base}say\"cheese\".png"),
            Expect::Either,
        ),
        (
            "sql injection",
            format!("{base}';DROP%20TABLE%20profiles;--"),
            Expect::Either,
        ),
        (
            "sql injection with spaces",
            format!("{base}'; DROP TABLE profiles; --"),
            Expect::Either,
        ),
        ("bad percent escape", format!("{base}100%"), Expect::Either),
        ("backslashes", format!("{base}a\\b\\\\c"), Expect::Either),
        (
            "backslash host trick",
            "https://cdn.example.com\\@evil.example/".into(),
            Expect::Either,
        ),
        ("emoji", format!("{base}😀.png"), Expect::Either),
        ("emoji host", "https://例え.jp/😀".into(), Expect::Either),
        ("rtl mark", format!("{base}\u{200f}gnp.png"), Expect::Either),
        (
            "upper-case scheme",
            "HTTPS://CDN.EXAMPLE.COM/A.png".into(),
            Expect::Either,
        ),
        (
            "credentials",
            "https://user:pass@cdn.example.com/a.png".into(),
            Expect::Either,
        ),
        ("nul", format!("{base}a\u{0}.png"), Expect::Refuse),
        ("newline", format!("{base}a\n.png"), Expect::Refuse),
        ("escape", format!("{base}\u{1b}[31m"), Expect::Refuse),
        (
            "http",
            "http://cdn.example.com/a.png".into(),
            Expect::Refuse,
        ),
        ("javascript", "javascript:alert('x')".into(), Expect::Refuse),
        (
            "10 KB",
            format!("{base}{}", "a".repeat(10 * 1024)),
            Expect::Refuse,
        ),
    ];
    for (case, value, expect) in avatars {
        let result = owner
            .update(
                UserProfile {
                    avatar_url: value.clone(),
                    ..target(&current)
                },
                &["avatar_url"],
            )
            .await;
        let stored = judge(case, "avatar_url", expect, result);
        let now = owner.get("me").await.unwrap();
        match stored {
            Some(stored) => {
                assert_same_bytes(&stored.avatar_url, &value, case);
                assert_same_bytes(&now.avatar_url, &value, case);
                current = now;
            }
            None => assert_eq!(now, current, "{case}: a refusal changed nothing"),
        }
    }

    // locale, set by the owner: only real BCP 47 tags, kept as sent.
    let locales: Vec<(&str, String, Expect)> = vec![
        (
            "sql injection",
            "en'; DROP TABLE profiles; --".into(),
            Expect::Refuse,
        ),
        ("quotes", "\"en\"".into(), Expect::Refuse),
        ("percent", "en%".into(), Expect::Refuse),
        ("underscore", "en_GB".into(), Expect::Refuse),
        ("like", "e_".into(), Expect::Refuse),
        ("backslash", "en\\GB".into(), Expect::Refuse),
        ("emoji", "😀".into(), Expect::Refuse),
        ("nul", "en\u{0}".into(), Expect::Refuse),
        ("rtl mark", "\u{200f}en".into(), Expect::Refuse),
        ("space", "en GB".into(), Expect::Refuse),
        ("10 KB", "a".repeat(10 * 1024), Expect::Refuse),
        (
            "10 KB of subtags",
            format!("en{}", "-abc".repeat(2500)),
            Expect::Refuse,
        ),
        ("zh-Hant-TW", "zh-Hant-TW".into(), Expect::Accept),
        ("lower-case region", "en-gb".into(), Expect::Accept),
    ];
    for (case, value, expect) in locales {
        let result = owner
            .update(
                UserProfile {
                    locale: value.clone(),
                    ..target(&current)
                },
                &["locale"],
            )
            .await;
        let stored = judge(case, "locale", expect, result);
        let now = owner.get("me").await.unwrap();
        match stored {
            Some(stored) => {
                assert_same_bytes(&stored.locale, &value, case);
                assert_same_bytes(&now.locale, &value, case);
                current = now;
            }
            None => assert_eq!(now, current, "{case}: a refusal changed nothing"),
        }
    }

    // And after all that, the table still works.
    let listed: HashSet<String> = admin
        .list_all(7, r#"auth_provider="hostile-idp""#)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        listed, accepted,
        "exactly the accepted hostile profiles are listed"
    );
    let plain = admin
        .create(external("hostile-idp", "plain-after"))
        .await
        .expect("a plain create still works");
    assert_eq!(
        admin.lookup("hostile-idp", "plain-after").await.unwrap().id,
        plain.id
    );
    let newcomer = w.register("newcomer").await;
    assert_eq!(
        w.caller(&newcomer.tokens.access_token)
            .get("me")
            .await
            .unwrap()
            .id,
        newcomer.profile.id
    );
    assert_eq!(owner.get("me").await.unwrap(), current);
    assert!(admin.list_all(0, "").await.len() >= accepted.len() + 4);
}

// ---------------------------------------------------------------------------
// 7. Uniqueness of (auth_provider, auth_id)

async fn concurrent_creates_for_one_pair_make_exactly_one_profile(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();

    // Two pairs, ten attempts each, all at once.
    let pairs = ["shared-1", "shared-2"];
    let attempts = (0..20).map(|i| {
        let admin = admin.clone();
        let auth_id = pairs[i % 2];
        async move {
            let result = admin
                .create(UserProfile {
                    display_name: format!("Racer {i}"),
                    ..external("race-idp", auth_id)
                })
                .await;
            (auth_id, result)
        }
    });
    let results = futures::future::join_all(attempts).await;
    for pair in pairs {
        let mine: Vec<&Result<UserProfile, Status>> = results
            .iter()
            .filter(|(auth_id, _)| *auth_id == pair)
            .map(|(_, result)| result)
            .collect();
        let winners: Vec<&UserProfile> = mine.iter().filter_map(|r| r.as_ref().ok()).collect();
        let exists = mine
            .iter()
            .filter(|r| matches!(r, Err(s) if s.code() == Code::AlreadyExists))
            .count();
        assert_eq!((winners.len(), exists), (1, 9), "{pair}: {mine:?}");
        let found = admin.lookup("race-idp", pair).await.unwrap();
        assert_eq!(found.id, winners[0].id, "{pair}");
        assert_eq!(
            found.display_name, winners[0].display_name,
            "{pair}: the winner's data"
        );
    }

    // Later attempts find the pair taken too; the same auth_id under another
    // provider is a different pair.
    let status = admin
        .create(external("race-idp", "shared-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let other = admin
        .create(external("other-idp", "shared-1"))
        .await
        .expect("another provider may use the same auth_id");
    assert_ne!(
        other.id,
        admin.lookup("race-idp", "shared-1").await.unwrap().id
    );
    // A local account's pair is taken by its registration.
    let status = admin
        .create(external("local", &w.admin.profile.id))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::AlreadyExists | Code::InvalidArgument),
        "{status:?}"
    );
    assert_eq!(
        admin.lookup("local", &w.admin.profile.id).await.unwrap().id,
        w.admin.profile.id
    );

    let listed = admin.list_all(0, r#"auth_provider="race-idp""#).await;
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Two concurrent creates, the smallest race.
    let (a, b) = tokio::join!(
        admin.create(external("race-idp", "pair-of-two")),
        admin.create(external("race-idp", "pair-of-two")),
    );
    let codes = [&a, &b].map(|r| r.as_ref().map(|_| ()).map_err(|s| s.code()));
    assert!(
        codes == [Ok(()), Err(Code::AlreadyExists)] || codes == [Err(Code::AlreadyExists), Ok(())],
        "{a:?} {b:?}"
    );
}
