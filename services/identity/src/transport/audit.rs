//! `identity.v1.AuditService`: parse, call the service, map the result.
//! Authentication happened in `authn::RequireBearer`.

use super::{authn, convert};
use crate::proto::v1::audit_service_server::AuditService;
use crate::proto::v1::{ListAuditEventsRequest, ListAuditEventsResponse};
use crate::service::audit_trail::AuditTrail;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AuditApi {
    trail: Arc<AuditTrail>,
}

impl AuditApi {
    pub fn new(trail: Arc<AuditTrail>) -> Self {
        AuditApi { trail }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let principal = authn::principal(&request)?;
        let r = request.get_ref();
        let (rows, next_page_token) = self
            .trail
            .list(&principal, r.page_size, &r.page_token, &r.filter)
            .await?;
        Ok(Response::new(ListAuditEventsResponse {
            events: rows.iter().map(convert::audit_event).collect(),
            next_page_token,
        }))
    }
}
