//! Follows `WatchRevocations`: applies each event to the shared knowledge,
//! resumes after the last cursor when the stream ends, and backs off while
//! identity cannot be reached — at least as long as identity's `RetryInfo`
//! asks, when it answers with one (a rate limit, a watcher cap).

use crate::principal::now_unix;
use crate::proto::v1::auth_service_client::AuthServiceClient;
use crate::proto::v1::revocation_event::Event;
use crate::proto::v1::{RevocationEvent, ServiceLoginRequest, WatchRevocationsRequest};
use crate::verifier::{Shared, WatchCredentials};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(2);
/// Old revocations are forgotten at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

pub(crate) async fn follow(
    shared: Arc<Shared>,
    mut client: AuthServiceClient<Channel>,
    credentials: WatchCredentials,
) {
    let mut retry = FIRST_RETRY;
    let mut pruned = Instant::now();
    let mut signed_in: Option<(String, SystemTime)> = None;
    loop {
        // The delay identity asked for with the last refusal, if any.
        let mut asked: Option<Duration> = None;
        let cursor = shared.knowledge().cursor.clone();
        let mut request = tonic::Request::new(WatchRevocationsRequest {
            resume_after: cursor,
        });
        let token = match &credentials {
            WatchCredentials::None => Ok(None),
            WatchCredentials::Token(token) => Ok(Some(token.clone())),
            WatchCredentials::Client { id, secret } => {
                sign_in(&mut client, id, secret, &mut signed_in)
                    .await
                    .map(Some)
            }
        };
        let opened = match token {
            Err(status) => Err(status),
            Ok(token) => {
                if let Some(token) = token {
                    match format!("Bearer {token}").parse() {
                        Ok(value) => {
                            request.metadata_mut().insert("authorization", value);
                        }
                        Err(_) => {
                            tracing::error!(
                                "the service token is not a valid header value; watching without it"
                            );
                        }
                    }
                }
                client.watch_revocations(request).await
            }
        };
        match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            retry = FIRST_RETRY;
                            apply(&shared, event).await;
                            if pruned.elapsed() >= PRUNE_EVERY {
                                shared.knowledge().prune(now_unix(), shared.leeway);
                                pruned = Instant::now();
                            }
                        }
                        Ok(None) => {
                            tracing::info!("identity ended the revocation stream; resuming");
                            break;
                        }
                        Err(status) => {
                            tracing::warn!(%status, "the revocation stream broke; resuming");
                            asked = retry_delay(&status);
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                asked = retry_delay(&status);
                if status.code() == tonic::Code::Unauthenticated {
                    // Rotated, disabled or expired: sign in again next time.
                    signed_in = None;
                }
                if status.code() == tonic::Code::InvalidArgument {
                    // Not a cursor identity wrote: start afresh (a reset).
                    shared.knowledge().cursor.clear();
                }
                let level_error = matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                );
                if level_error {
                    tracing::error!(%status, "identity refused the revocation stream (needs a service token holding revocations:watch, or an admitted TLS client identity)");
                } else {
                    tracing::warn!(%status, "cannot open the revocation stream");
                }
            }
        }
        // Retrying sooner than identity asked would only be refused again,
        // each refusal one more call on a replica that asked for fewer.
        tokio::time::sleep(asked.map_or(retry, |asked| asked.max(retry))).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// The `google.rpc.RetryInfo` delay of a refusal (`RESOURCE_EXHAUSTED`
/// from a rate limit or a watcher cap), if identity sent one.
fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
}

/// A token of the service client, from `ServiceLogin` unless the last one
/// has more than a minute left.
async fn sign_in(
    client: &mut AuthServiceClient<Channel>,
    id: &str,
    secret: &str,
    signed_in: &mut Option<(String, SystemTime)>,
) -> Result<String, tonic::Status> {
    if let Some((token, renew_at)) = signed_in.as_ref()
        && SystemTime::now() < *renew_at
    {
        return Ok(token.clone());
    }
    let answer = client
        .service_login(ServiceLoginRequest {
            client_id: id.to_owned(),
            client_secret: secret.to_owned(),
        })
        .await?
        .into_inner();
    let expires = answer.access_token_expire_time.map_or(UNIX_EPOCH, |t| {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(t.seconds).unwrap_or(0))
    });
    let renew_at = expires
        .checked_sub(Duration::from_secs(60))
        .unwrap_or(UNIX_EPOCH);
    *signed_in = Some((answer.access_token.clone(), renew_at));
    Ok(answer.access_token)
}

async fn apply(shared: &Shared, event: RevocationEvent) {
    let seconds = |t: Option<prost_types::Timestamp>| t.map_or(i64::MAX, |t| t.seconds);
    let heartbeat = matches!(event.event, Some(Event::Heartbeat(_)));
    let refetch = {
        let mut knowledge = shared.knowledge();
        let mut refetch = false;
        match event.event {
            Some(Event::SessionRevoked(e)) => {
                knowledge.session_revoked(e.session_id, seconds(e.expire_time));
            }
            Some(Event::ProfileSessionsRevoked(e)) => {
                knowledge.profile_sessions_revoked(
                    e.profile_id,
                    e.except_session_id,
                    // No time: refuse every token of the profile.
                    e.revoke_time.map_or(i64::MAX, |t| t.seconds),
                    seconds(e.expire_time),
                );
            }
            Some(Event::ProfileChanged(e)) => knowledge.profile_changed(e.profile_id, now_unix()),
            Some(Event::KeySetChanged(_)) => refetch = true,
            // An event of a kind this version does not know (`None`) may be
            // a revocation: treated as a reset, so nothing is missed.
            Some(Event::Reset(_)) | None => {
                knowledge.reset(now_unix());
                refetch = true;
            }
            Some(Event::Heartbeat(_)) => {}
        }
        // After the event is applied, so a resume never skips it.
        knowledge.cursor = event.cursor;
        refetch
    };
    if heartbeat {
        shared.heartbeat();
    }
    if refetch {
        shared.keys.refresh().await;
    }
}
