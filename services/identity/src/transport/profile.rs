//! `identity.v1.ProfileService`: parse, call the service, map the result.
//! Authentication happened in `authn::RequireBearer`.

use super::{authn, convert};
use crate::proto::v1::profile_service_server::ProfileService;
use crate::proto::v1::*;
use crate::service::profiles::{NewProfile, ProfilePatch, Profiles};
use secrecy::SecretString;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ProfileApi {
    profiles: Arc<Profiles>,
}

impl ProfileApi {
    pub fn new(profiles: Arc<Profiles>) -> Self {
        ProfileApi { profiles }
    }
}

fn patch(p: &UserProfile) -> ProfilePatch {
    ProfilePatch {
        email: p.email.clone(),
        display_name: p.display_name.clone(),
        avatar_url: p.avatar_url.clone(),
        locale: p.locale.clone(),
        roles: p.roles.clone(),
    }
}

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<UserProfile>, Status> {
        let principal = authn::principal(&request)?;
        let profile = self.profiles.get(&principal, &request.get_ref().id).await?;
        Ok(Response::new(convert::profile(&profile)))
    }

    async fn lookup_profile(
        &self,
        request: Request<LookupProfileRequest>,
    ) -> Result<Response<UserProfile>, Status> {
        let principal = authn::principal(&request)?;
        let r = request.get_ref();
        let profile = self
            .profiles
            .lookup(&principal, &r.auth_provider, &r.auth_id)
            .await?;
        Ok(Response::new(convert::profile(&profile)))
    }

    async fn create_profile(
        &self,
        request: Request<CreateProfileRequest>,
    ) -> Result<Response<UserProfile>, Status> {
        let principal = authn::principal(&request)?;
        let p = request.into_inner().profile.unwrap_or_default();
        let new = NewProfile {
            auth_provider: p.auth_provider.clone(),
            auth_id: p.auth_id.clone(),
            patch: patch(&p),
        };
        let profile = self.profiles.create(&principal, new).await?;
        Ok(Response::new(convert::profile(&profile)))
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<UserProfile>, Status> {
        let principal = authn::principal(&request)?;
        let r = request.into_inner();
        let p = r.profile.unwrap_or_default();
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let profile = self
            .profiles
            .update(&principal, &p.id, &p.etag, patch(&p), &mask)
            .await?;
        Ok(Response::new(convert::profile(&profile)))
    }

    async fn delete_profile(
        &self,
        request: Request<DeleteProfileRequest>,
    ) -> Result<Response<()>, Status> {
        let principal = authn::principal(&request)?;
        let r = request.into_inner();
        self.profiles
            .delete(
                &principal,
                &r.id,
                &r.etag,
                SecretString::from(r.current_password),
            )
            .await?;
        Ok(Response::new(()))
    }

    async fn list_profiles(
        &self,
        request: Request<ListProfilesRequest>,
    ) -> Result<Response<ListProfilesResponse>, Status> {
        let principal = authn::principal(&request)?;
        let r = request.get_ref();
        let (profiles, next_page_token) = self
            .profiles
            .list(&principal, r.page_size, &r.page_token, &r.filter)
            .await?;
        Ok(Response::new(ListProfilesResponse {
            profiles: profiles.iter().map(convert::profile).collect(),
            next_page_token,
        }))
    }
}
