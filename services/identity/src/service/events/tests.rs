use super::*;
use identity_core::Id;
use identity_core::events::{Field, REDACTED};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt as _;

/// What a JSON log layer (as `telemetry::init` sets it up) wrote.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json(raw: &str) -> Vec<serde_json::Value> {
    raw.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Runs `f` with the service's JSON log format going to the answer.
fn logged(f: impl FnOnce()) -> String {
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(move || writer.clone()),
    );
    tracing::subscriber::with_default(subscriber, f);
    let raw = lines.0.lock().unwrap().clone();
    String::from_utf8(raw).unwrap()
}

/// The series of `event` in the process-wide registry.
fn counted(event: EventName) -> u64 {
    let series = format!("identity_security_events_total{{event=\"{event}\"}} ");
    metrics()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0)
}

/// A store in a fresh SQLite file, migrated.
async fn store() -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("identity-events-{}", Id::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("identity.db").display())
        .parse()
        .unwrap();
    Store::migrate(&url).await.unwrap();
    let settings = identity_store::PoolSettings {
        max_size: 2,
        timeout: std::time::Duration::from_secs(5),
    };
    (Store::open(&url, &settings).unwrap(), dir)
}

async fn rows(store: &Store) -> Vec<identity_store::AuditRow> {
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    store.recent_audit(since, None, 100).await.unwrap()
}

/// One value of the right kind for each field.
fn every_field() -> SecurityEvent {
    let mut event = SecurityEvent::new(EventName::ConfigInsecure);
    for field in Field::ALL {
        event = match field {
            Field::Reason => event.reason("r"),
            Field::Scope => event.scope("address"),
            Field::Rpc => event.rpc("login"),
            Field::RetryAfterMs => event.retry_after_ms(5),
            Field::TokenKind => event.token_kind("access"),
            Field::Subject => event.subject(Subject::Profile(Id::new())),
            Field::EmailPseudonym => event.email_pseudonym("0a1b"),
            Field::Purpose => event.purpose("delete_account"),
            Field::Roles => event.roles(&["a".into(), "b".into()]),
            Field::Role => event.role("provisioner"),
            Field::Actor => event.actor(Actor::AdminCli),
            Field::Action => event.action("get"),
            Field::Target => event.target(Id::new().to_string()),
            Field::Count => event.count(2),
            Field::Provider => event.provider("better-auth"),
            Field::Created => event.created(true),
            Field::ClientId => event.client_id("svc_0a"),
            Field::TtlSecs => event.ttl_secs(60),
            Field::SessionsRevoked => event.sessions_revoked(1),
            Field::KeptCurrent => event.kept_current(false),
            Field::Paths => event.paths(&["locale"]),
            Field::DevMode => event.dev_mode(true),
            Field::RateLimits => event.rate_limits(false),
        };
    }
    event
}

#[test]
fn every_field_of_the_vocabulary_reaches_the_log_line_under_its_name() {
    let event = every_field();
    let row = event.audit_row();
    let raw = logged(|| event.emit_committed());
    let lines = json(&raw);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["target"], "identity::security");
    assert_eq!(line["event.name"], "identity.config.insecure");
    assert_eq!(line["message"], "identity.config.insecure");
    for field in Field::ALL {
        let audited = &row.detail[field.key()];
        assert_eq!(
            line[field.log_key()],
            *audited,
            "{field:?} as logged and as audited"
        );
    }
    // Absent fields are left out, not logged empty.
    assert!(line.get("profile.id").is_none());
    assert!(line.get("client.address").is_none());
}

#[tokio::test]
async fn emit_logs_counts_and_queues_the_audit_row() {
    let (store, dir) = store().await;
    let sink = AuditSink::start(store.clone(), 16, 16);
    let (profile, session) = (Id::new(), Id::new());
    let before = counted(EventName::ReauthenticationFailed);
    let lines = json(&logged(|| {
        SecurityEvent::new(EventName::ReauthenticationFailed)
            .profile(profile)
            .session(session)
            .client(Some("198.51.100.7"))
            .purpose("change_email")
            .reason("bad_password")
            .emit(&sink)
    }));
    assert!(
        counted(EventName::ReauthenticationFailed) > before,
        "counted"
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["target"], "identity::security");
    assert_eq!(line["event.name"], "identity.reauthentication.failed");
    assert_eq!(line["profile.id"], profile.to_string());
    assert_eq!(line["session.id"], session.to_string());
    assert_eq!(line["client.address"], "198.51.100.7");
    assert_eq!(line["reason"], "bad_password");
    assert_eq!(line["purpose"], "change_email");

    sink.close().await;
    let rows = rows(&store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row.event_name, "identity.reauthentication.failed");
    assert_eq!(row.profile_id, Some(profile));
    assert_eq!(row.session_id, Some(session));
    assert_eq!(row.client_addr.as_deref(), Some("198.51.100.7"));
    let detail: serde_json::Value = serde_json::from_str(&row.detail).unwrap();
    assert_eq!(
        detail,
        serde_json::json!({"reason": "bad_password", "purpose": "change_email"})
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_rate_limited_call_is_logged_and_counted_but_never_a_row() {
    let (store, dir) = store().await;
    let sink = AuditSink::start(store.clone(), 16, 16);
    let before = counted(EventName::RateLimited);
    let lines = json(&logged(|| {
        SecurityEvent::new(EventName::RateLimited)
            .rpc("login")
            .scope("address")
            .retry_after_ms(250)
            .emit(&sink)
    }));
    assert!(counted(EventName::RateLimited) > before);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["retry_after_ms"], 250);
    sink.close().await;
    assert!(rows(&store).await.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn emit_awaited_writes_the_row_before_it_returns() {
    let (store, dir) = store().await;
    let profile = Id::new();
    let before = counted(EventName::LoginFailed);
    SecurityEvent::new(EventName::LoginFailed)
        .profile(profile)
        .subject(Subject::Profile(profile))
        .reason("bad_password")
        .emit_awaited(&store)
        .await
        .unwrap();
    assert!(counted(EventName::LoginFailed) > before);
    let rows = rows(&store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].profile_id, Some(profile));
    let _ = std::fs::remove_dir_all(dir);
}

/// An attacker controls some of what events carry (a provider name in a
/// RevokeAllSessions target, a client address behind a proxy) and would
/// like their own or someone else's secrets in the logs; a later call site
/// could pass one by mistake. Neither the log line nor the row keeps them.
#[tokio::test]
async fn fields_never_carry_an_email_a_password_or_a_token() {
    use secrecy::ExposeSecret as _;
    let (store, dir) = store().await;
    let email = "victim@example.com";
    let jwt = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    let refresh = identity_core::refresh::generate();
    let secret = identity_core::service_client::new_secret();
    let planted = [
        email,
        jwt,
        refresh.token.expose_secret(),
        secret.secret.expose_secret(),
    ];
    let mut events = Vec::new();
    for text in planted {
        events.push(
            SecurityEvent::new(EventName::AccessDenied)
                .profile(Id::new())
                .client(Some(text))
                .action("revoke_all_sessions")
                .target(format!("auth_provider:{text}"))
                .subject(Subject::Email(text.to_owned()))
                .email_pseudonym(text)
                .roles(&[text.to_owned()])
                .role(text)
                .provider(text)
                .client_id(text)
                .paths(&[text]),
        );
    }
    let logged = logged(|| {
        for event in &events {
            event.clone().emit_committed();
        }
    });
    for event in &events {
        store.record_audit(&event.audit_row()).await.unwrap();
    }
    let audited = format!("{:?}", rows(&store).await);
    assert!(logged.contains(REDACTED) && audited.contains(REDACTED));
    for text in planted {
        assert!(!logged.contains(text), "{text} logged: {logged}");
        assert!(!audited.contains(text), "{text} audited: {audited}");
    }
    // No field takes a password: they are `SecretString`s, which no setter
    // accepts, and the vocabulary has no field for one.
    for field in Field::ALL {
        assert!(!field.key().contains("password"), "{field:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The OpenTelemetry layer (as `telemetry::init` installs it) records the
/// event on the span it happens in, with its name and fields.
#[test]
fn the_event_is_recorded_on_the_current_span() {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

    #[derive(Debug, Clone, Default)]
    struct Spans(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Spans {
        async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    let spans = Spans::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let profile = Id::new();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("identity.v1.AuthService/Login");
        let _entered = span.enter();
        SecurityEvent::new(EventName::LoginFailed)
            .subject(Subject::Profile(profile))
            .reason("bad_password")
            .emit_committed();
    });
    let _ = provider.force_flush();
    let spans = spans.0.lock().unwrap();
    let span = spans
        .iter()
        .find(|s| s.name == "identity.v1.AuthService/Login")
        .expect("the span");
    let event = span
        .events
        .iter()
        .find(|e| e.name == "identity.login.failed")
        .expect("the event on the span");
    let attribute = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attribute("event.name").as_deref(),
        Some("identity.login.failed")
    );
    assert_eq!(attribute("reason").as_deref(), Some("bad_password"));
    assert_eq!(attribute("subject"), Some(profile.to_string()));
}
