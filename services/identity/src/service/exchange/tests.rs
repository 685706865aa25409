use super::*;
use crate::service::testing::{PROVIDER, PROVIDER_SESSION_TTL, Services, caller};
use identity_core::provider::Verifying;
use identity_core::tokens::Refusal;
use std::collections::HashMap;
use std::sync::Mutex;

#[test]
fn another_signature_over_the_same_claims_is_the_same_spent_token() {
    let claims = ProviderClaims {
        sub: "user".into(),
        email: None,
        name: None,
        email_verified: false,
        jti: None,
        exp: 0,
    };
    assert_eq!(
        spent_key(&claims, "aGVhZGVy.Y2xhaW1z.c2lnLW9uZQ"),
        spent_key(&claims, "aGVhZGVy.Y2xhaW1z.c2lnLXR3bw"),
        "an ECDSA signature's malleated twin must not exchange again"
    );
    assert_ne!(
        spent_key(&claims, "aGVhZGVy.Y2xhaW1z.c2ln"),
        spent_key(&claims, "aGVhZGVy.b3RoZXI.c2ln")
    );
}

/// The provider as ExchangeToken sees it: an answer per token text; any
/// other token has a bad signature.
#[derive(Default)]
struct FakeProvider {
    answers: Mutex<HashMap<String, Result<ProviderClaims, VerifyFailure>>>,
}

impl FakeProvider {
    fn answer(&self, token: &str, answer: Result<ProviderClaims, VerifyFailure>) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), answer);
    }
}

impl TokenVerifier for FakeProvider {
    fn verify<'a>(&'a self, token: &'a str) -> Verifying<'a> {
        let answer = self
            .answers
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .unwrap_or(Err(VerifyFailure::Refused(Refusal::BadSignature)));
        Box::pin(async move { answer })
    }
}

fn grace(sub: &str) -> ProviderClaims {
    ProviderClaims {
        sub: sub.into(),
        email: Some("grace@example.com".into()),
        name: Some("Grace".into()),
        email_verified: true,
        jti: None,
        exp: Utc::now().timestamp() + 300,
    }
}

async fn set_up() -> (Services, Arc<FakeProvider>, TokenExchange) {
    let services = Services::start().await;
    let provider = Arc::new(FakeProvider::default());
    let exchange = services.exchange(Arc::clone(&provider) as Arc<dyn TokenVerifier>);
    (services, provider, exchange)
}

#[tokio::test]
async fn a_first_exchange_creates_a_profile_linked_by_auth_id() {
    let (services, provider, exchange) = set_up().await;
    provider.answer("h.first.s", Ok(grace("ba-user-1")));
    provider.answer("h.second.s", Ok(grace("ba-user-1")));

    let first = exchange
        .exchange(&caller(), "h.first.s", "")
        .await
        .expect("exchanged");
    assert!(first.created);
    assert_eq!(first.profile.auth_provider, PROVIDER);
    assert_eq!(first.profile.auth_id, "ba-user-1");
    assert_eq!(first.profile.email.as_deref(), Some("grace@example.com"));
    assert!(first.profile.email_verified);
    let stored = services
        .store
        .find_profile_by_auth(PROVIDER, "ba-user-1")
        .await
        .unwrap()
        .expect("provisioned");
    assert_eq!(stored.id, first.profile.id);
    let claims = services.claims(&first.tokens).await.expect("a valid token");
    assert_eq!(claims.sub, first.profile.id.to_string());
    assert_eq!(claims.auth_id, "ba-user-1");

    let second = exchange
        .exchange(&caller(), "h.second.s", TOKEN_TYPE_JWT)
        .await
        .expect("exchanged again");
    assert!(!second.created);
    assert_eq!(second.profile.id, first.profile.id);
    assert_ne!(second.tokens.session_id, first.tokens.session_id);
}

#[tokio::test]
async fn a_replayed_provider_token_is_refused() {
    let (_services, provider, exchange) = set_up().await;
    provider.answer("h.once.s", Ok(grace("ba-user-1")));
    exchange
        .exchange(&caller(), "h.once.s", "")
        .await
        .expect("the first exchange");
    let replayed = exchange.exchange(&caller(), "h.once.s", "").await;
    assert!(
        matches!(replayed, Err(Error::TokenAlreadyExchanged)),
        "{:?}",
        replayed.err()
    );

    // A token with an id is spent by its id: another text of it is the
    // same token.
    let with_jti = ProviderClaims {
        jti: Some("jti-7".into()),
        ..grace("ba-user-1")
    };
    provider.answer("h.jti.one", Ok(with_jti.clone()));
    provider.answer("h.jti-again.two", Ok(with_jti));
    exchange
        .exchange(&caller(), "h.jti.one", "")
        .await
        .expect("the first exchange of jti-7");
    let again = exchange.exchange(&caller(), "h.jti-again.two", "").await;
    assert!(
        matches!(again, Err(Error::TokenAlreadyExchanged)),
        "{:?}",
        again.err()
    );
}

#[tokio::test]
async fn a_verifier_outage_is_unavailable_and_spends_nothing() {
    let (services, provider, exchange) = set_up().await;
    provider.answer("h.token.s", Err(VerifyFailure::Unavailable));
    let refused = exchange.exchange(&caller(), "h.token.s", "").await;
    assert!(
        matches!(refused, Err(Error::Unavailable)),
        "{:?}",
        refused.err()
    );
    assert!(
        services
            .store
            .find_profile_by_auth(PROVIDER, "ba-user-1")
            .await
            .unwrap()
            .is_none()
    );

    provider.answer("h.token.s", Ok(grace("ba-user-1")));
    exchange
        .exchange(&caller(), "h.token.s", "")
        .await
        .expect("the same token, once the provider is back");
}

#[tokio::test]
async fn a_refused_provider_token_is_unauthenticated_and_provisions_nothing() {
    let (services, provider, exchange) = set_up().await;
    provider.answer("h.expired.s", Err(VerifyFailure::Refused(Refusal::Expired)));
    for token in ["h.expired.s", "h.forged.s"] {
        let refused = exchange.exchange(&caller(), token, "").await;
        assert!(
            matches!(refused, Err(Error::Unauthenticated)),
            "{token}: {:?}",
            refused.err()
        );
    }
    let rows = services.store.list_profiles(None, None, 10).await.unwrap();
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test]
async fn an_exchanged_session_ends_within_the_provider_session_ttl() {
    let (_services, provider, exchange) = set_up().await;
    provider.answer("h.token.s", Ok(grace("ba-user-1")));
    let exchanged = exchange
        .exchange(&caller(), "h.token.s", "")
        .await
        .expect("exchanged");
    let latest = Utc::now() + chrono::Duration::from_std(PROVIDER_SESSION_TTL).unwrap();
    assert!(
        exchanged.tokens.refresh_expires_at <= latest,
        "{} is later than {latest}",
        exchanged.tokens.refresh_expires_at
    );
}

#[tokio::test]
async fn an_empty_token_or_another_token_type_names_its_field() {
    let (_services, _provider, exchange) = set_up().await;
    let Err(Error::Invalid(violations)) = exchange
        .exchange(
            &caller(),
            "",
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .await
    else {
        panic!("invalid input");
    };
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["subject_token", "subject_token_type"]);
}
