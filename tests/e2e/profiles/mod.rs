//! ProfileService: who may read and change which profile, bearer tokens on
//! every call, field masks and etags, deletion ending every session,
//! pagination under concurrent inserts, hostile strings and uniqueness races.
//! Each test starts its own [`World`]: a server whose bootstrap admin is
//! registered, and the accounts the test registers.

mod access;
mod authentication;
mod create;
mod delete;
mod hostile;
mod list;
mod update;
mod validation;

use crate::support::{
    ADMIN, Auth, Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email,
};
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use prost_types::FieldMask;
use tonic::Status;
use tonic::transport::Channel;

fn mask(paths: &[&str]) -> FieldMask {
    FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    }
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
    auth: Auth,
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
        let mut auth = Auth::new(channel.clone());
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

async fn register_account(auth: &mut Auth, address: &str, display_name: &str) -> Account {
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
