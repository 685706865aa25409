//! Start-up and shutdown: wires configuration, keys, store, services and
//! listeners together, and drains on SIGTERM/SIGINT.

use crate::config::keys::load_keys;
use crate::config::{Config, Mode};
use crate::infra::bcrypt::Hasher;
use crate::infra::limits::Limiter;
use crate::service::audit::{AuditSink, enforce_retention};
use crate::service::audit_trail::AuditTrail;
use crate::service::exchange::{ExchangeSettings, TokenExchange};
use crate::service::revocation::FastPath;
use crate::service::{Auth, AuthSettings, Profiles};
use crate::transport;
use anyhow::Context as _;
use identity_core::events::EventName;
use identity_store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

/// Gauges read at scrape time: database pool, bcrypt queue, rate-limit
/// counters and the revocation listener; and every security event's
/// counter at 0, so that alerts see the first one.
fn register_gauges(store: &Store, auth: &Arc<Auth>, limits: &Arc<Limiter>, fast: &Arc<FastPath>) {
    let metrics = crate::telemetry::metrics::metrics();
    metrics.security_events_from_zero(EventName::ALL.iter().map(|e| e.as_str()));
    let pool = store.clone();
    metrics.gauge(
        "identity_db_pool_connections",
        "Database pool connections by state.",
        Box::new(move || {
            let (size, available, waiting) = pool.pool_status();
            vec![
                (
                    "state=\"in_use\"".into(),
                    size.saturating_sub(available) as f64,
                ),
                ("state=\"idle\"".into(), available as f64),
                ("state=\"waiting\"".into(), waiting as f64),
            ]
        }),
    );
    let auth = Arc::clone(auth);
    metrics.gauge(
        "identity_bcrypt_queue_depth",
        "Password hashing jobs waiting or running.",
        Box::new(move || vec![(String::new(), auth.bcrypt_queued() as f64)]),
    );
    let limits = Arc::clone(limits);
    metrics.gauge(
        "identity_rate_limit_keys",
        "Rate-limit counters held in this replica's memory (addresses and accounts).",
        Box::new(move || vec![(String::new(), limits.tracked_keys() as f64)]),
    );
    // No sample without a listener (SQLite): see `FastPath::listener_status`.
    let listener = Arc::clone(fast);
    metrics.gauge(
        "identity_revocation_listener_up",
        "1 while the revocation listener (PostgreSQL) is connected and hears its own heartbeat, else 0.",
        Box::new(move || {
            listener
                .listener_status()
                .map(|s| (String::new(), if s.hearing { 1.0 } else { 0.0 }))
                .into_iter()
                .collect()
        }),
    );
    let listener = Arc::clone(fast);
    metrics.gauge(
        "identity_revocation_staleness_seconds",
        "Seconds since the revocation listener (PostgreSQL) last confirmed it holds every revocation announced.",
        Box::new(move || {
            listener
                .listener_status()
                .map(|s| (String::new(), s.staleness.as_secs_f64()))
                .into_iter()
                .collect()
        }),
    );
}

/// Probes the database and flips the health status when it changes:
/// NOT_SERVING while it is unreachable, SERVING again once it is back.
async fn watch_database(
    store: Store,
    reporter: tonic_health::server::HealthReporter,
    interval: Duration,
    initially: bool,
) {
    let mut serving = initially;
    if !initially {
        tracing::warn!(
            event.name = "identity.health.not_serving",
            "database unreachable: NOT_SERVING"
        );
    }
    loop {
        tokio::time::sleep(interval).await;
        let ok = matches!(
            tokio::time::timeout(interval.max(Duration::from_secs(1)), store.ping()).await,
            Ok(Ok(()))
        );
        if serving != ok {
            if ok {
                tracing::info!(
                    event.name = "identity.health.serving",
                    "database reachable: SERVING"
                );
            } else {
                tracing::warn!(
                    event.name = "identity.health.not_serving",
                    "database unreachable: NOT_SERVING"
                );
            }
            transport::set_health(&reporter, ok).await;
            serving = ok;
        }
    }
}

/// Runs the server until `shutdown` resolves, then drains for at most the
/// configured grace period.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.mode == Mode::Dev {
        tracing::warn!(
            event.name = "identity.config.insecure",
            "DEVELOPMENT MODE: plaintext gRPC, local signing key in {}, bcrypt cost {}. NEVER USE IN PRODUCTION.",
            config
                .keys
                .dev_generated
                .as_ref()
                .map_or("(configured)".into(), |p| p.display().to_string()),
            config.bcrypt_cost,
        );
    }
    if config.migrate_on_start {
        let applied = Store::migrate(&config.database_url)
            .await
            .context("IDENTITY_DATABASE_URL: migrations failed")?;
        tracing::info!(count = applied.len(), "migrations applied");
    }
    let keys = Arc::new(load_keys(
        &config.keys,
        &config.issuer,
        &config.audience,
        config.token_leeway,
    )?);
    let (cost, threads, queue) = (
        config.bcrypt_cost,
        config.bcrypt_threads,
        config.bcrypt_queue,
    );
    let hasher = tokio::task::spawn_blocking(move || Hasher::start(cost, threads, queue))
        .await?
        .context("IDENTITY_BCRYPT_COST")?;
    let store = Store::open(&config.database_url, &config.pool).context("IDENTITY_DATABASE_URL")?;
    if config.mode == Mode::Dev || !config.limits.enabled {
        // The insecure start is part of the audit trail too (best effort,
        // in the background: an unreachable database must not hold up the
        // start by its connection timeout).
        use crate::service::events::{Emit as _, EventName, SecurityEvent};
        let event = SecurityEvent::new(EventName::ConfigInsecure)
            .dev_mode(config.mode == Mode::Dev)
            .rate_limits(config.limits.enabled);
        let audit_store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = event.emit_awaited(&audit_store).await {
                tracing::warn!(error = %e, "could not record identity.config.insecure in the audit trail");
            }
        });
    }
    let reporter = tonic_health::server::HealthReporter::new();
    let limits = Arc::new(Limiter::new(&config.limits)?);
    let limits_health = limits.reachable().map(|reachable| {
        tokio::spawn(transport::follow_health(
            reporter.clone(),
            crate::infra::limits::HEALTH_NAME,
            reachable,
        ))
    });
    let pruning = tokio::spawn(crate::infra::limits::prune_periodically(Arc::clone(
        &limits,
    )));
    if !config.limits.enabled {
        tracing::warn!(
            event.name = "identity.config.insecure",
            "rate limits are OFF (IDENTITY_RATE_LIMIT_ENABLED=false)"
        );
    }
    // Validation from memory, shared by Auth and Profiles; kept true from
    // below, once the rest is built.
    let fast = FastPath::new(
        &config.revocation,
        config.access_token_ttl + config.token_leeway,
    );
    let auth = Arc::new(Auth::new(
        store.clone(),
        Arc::clone(&keys),
        Arc::new(hasher),
        AuthSettings {
            access_token_ttl: config.access_token_ttl,
            refresh_token_ttl: config.refresh_token_ttl,
            refresh_reuse_grace: config.refresh_reuse_grace,
            bootstrap_admins: config.bootstrap_admins.clone(),
            password_min_score: config.password_min_score,
            ipv6_prefix: config.rate_limit_ipv6_prefix,
            request_timeout: config.request_timeout,
        },
        Arc::clone(&limits),
        AuditSink::start(store.clone(), 4096, 1024),
        Arc::clone(&fast),
    ));
    let retention = tokio::spawn(enforce_retention(store.clone(), config.audit_retention));
    let housekeeping = tokio::spawn(crate::service::housekeeping::run(
        store.clone(),
        config.housekeeping,
    ));
    register_gauges(&store, &auth, &limits, &fast);
    let admin = match config.metrics_addr {
        Some(addr) => {
            let listener = crate::telemetry::admin::bind(addr)
                .await
                .with_context(|| format!("IDENTITY_METRICS_ADDR: cannot listen on {addr}"))?;
            tracing::info!(address = %listener.local_addr()?, "serving metrics on /metrics");
            Some(tokio::spawn(crate::telemetry::admin::serve(listener)))
        }
        None => None,
    };
    let profiles = Arc::new(Profiles::new(
        store.clone(),
        Arc::clone(&keys),
        auth.audit_sink(),
        Arc::clone(&auth),
        Arc::clone(&fast),
    ));
    // Runs until the process exits (validation stays correct while draining).
    let _revocation_tasks = fast.start(
        &config.revocation,
        &store,
        &config.database_url,
        config.revocation_listen_url.as_ref(),
    );

    // Probe once before listening, so the first health answer is true.
    let reachable = matches!(
        tokio::time::timeout(config.pool.timeout, store.ping()).await,
        Ok(Ok(()))
    );
    transport::set_health(&reporter, reachable).await;
    reporter
        .set_service_status(transport::LIVENESS, tonic_health::ServingStatus::Serving)
        .await;
    // ExchangeToken, when a provider is configured. `_provider` keeps the
    // JWK set fresh until the server stops.
    let (_provider, provider_health, exchange) = match &config.provider {
        Some(settings) => {
            // NOT_SERVING until the JWK set has been fetched.
            reporter
                .set_service_status(
                    crate::provider::HEALTH_SERVICE,
                    tonic_health::ServingStatus::NotServing,
                )
                .await;
            let provider = crate::provider::start(settings)
                .context("IDENTITY_PROVIDER_JWKS_URL: the HTTPS client")?;
            let health = tokio::spawn(transport::follow_health(
                reporter.clone(),
                crate::provider::HEALTH_SERVICE,
                provider.reachable(),
            ));
            let exchange = Arc::new(TokenExchange::new(
                Arc::clone(&auth),
                store.clone(),
                provider.verifier(),
                ExchangeSettings {
                    provider: settings.name.clone(),
                    session_ttl: settings.session_ttl,
                    leeway: settings.leeway,
                },
            ));
            (Some(provider), Some(health), Some(exchange))
        }
        None => (None, None, None),
    };
    let watcher = tokio::spawn(watch_database(
        store.clone(),
        reporter.clone(),
        config.health_interval,
        reachable,
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let mut health_only = None;
    if let Some(addr) = config.health_listen_addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("IDENTITY_HEALTH_LISTEN_ADDR: cannot listen on {addr}"))?;
        tracing::info!(address = %listener.local_addr()?, "serving grpc.health.v1 (plaintext)");
        let server = transport::health_server_builder()
            .add_service(transport::health_service(&reporter))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stopped(stop_rx.clone()),
            );
        health_only = Some(tokio::spawn(server));
    }

    // Bound before the gRPC port, so that it serves once "serving gRPC" is logged.
    let well_known = match &config.http {
        Some(http) => {
            let listener = TcpListener::bind(http.addr).await.with_context(|| {
                format!("IDENTITY_HTTP_LISTEN_ADDR: cannot listen on {}", http.addr)
            })?;
            let bound = listener.local_addr()?;
            let site = transport::well_known::WellKnown::new(
                Arc::clone(&auth),
                &config.issuer,
                &http.public_url.resolve(bound),
            );
            tracing::info!(
                address = %bound,
                jwks_uri = site.jwks_uri(),
                max_connections = http.max_connections,
                max_per_address = http.max_per_address,
                "serving /.well-known/ (HTTP)"
            );
            Some(tokio::spawn(transport::well_known::serve(
                listener,
                Arc::new(site),
                http.max_connections,
                http.max_per_address,
            )))
        }
        None => None,
    };

    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| {
            format!(
                "IDENTITY_LISTEN_ADDR: cannot listen on {}",
                config.listen_addr
            )
        })?;
    let local = listener.local_addr()?;
    let http = transport::HttpSettings {
        tls: config.tls.is_some(),
        grpc_web_origins: config.grpc_web_origins.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        trace_trusted_proxies: config.trace_trusted_proxies.clone(),
        listen_addr: local,
        max_message_bytes: config.max_message_bytes,
        max_concurrent_streams: config.max_concurrent_streams,
        request_timeout: config.request_timeout,
    };
    let api = transport::Api {
        auth: Arc::clone(&auth),
        audit: Arc::new(AuditTrail::new(
            store.clone(),
            Arc::clone(&keys),
            Arc::clone(&profiles),
        )),
        profiles,
        exchange,
        health: reporter.clone(),
    };
    let stop = stopped(stop_rx.clone());
    let mut tls_watcher = None;
    type Serving =
        std::pin::Pin<Box<dyn Future<Output = Result<(), transport::ServeError>> + Send>>;
    let server: Serving = match &config.tls {
        Some(files) => {
            let tls = transport::tls::Reloadable::new(files)?;
            tls_watcher = Some(tls.watch(files.clone(), config.tls_reload_interval));
            Box::pin(transport::serve(http, api, tls.incoming(listener), stop))
        }
        None => {
            // `tcp_nodelay` of the builder is ignored with an incoming stream:
            // without it, small responses wait out delayed ACKs (40 ms).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(transport::serve(http, api, incoming, stop))
        }
    };
    tracing::info!(
        address = %local,
        tls = config.tls.is_some(),
        mtls = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        mtls.crl = config.tls.as_ref().is_some_and(|t| t.client_crl.is_some()),
        mtls.allowed_sans = config.tls.as_ref().map_or(0, |t| t.client_allowed_sans.len()),
        backend = ?config.backend,
        kid = keys.signing_kid(),
        "serving gRPC"
    );

    let mut server = tokio::spawn(server);
    tokio::select! {
        result = &mut server => {
            watcher.abort();
            return result?.context("gRPC server failed");
        }
        () = shutdown => {}
    }

    tracing::info!(grace = ?config.shutdown_grace, "shutting down: draining in-flight calls");
    watcher.abort();
    // Load balancers see NOT_SERVING first and stop sending new calls.
    transport::set_health(&reporter, false).await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(config.shutdown_grace, &mut server).await {
        Ok(result) => result?.context("gRPC server failed")?,
        Err(_) => {
            tracing::warn!("grace period over: abandoning calls still in flight");
            server.abort();
        }
    }
    if let Some(health) = health_only {
        health.abort();
    }
    if let Some(tls) = tls_watcher {
        tls.abort();
    }
    if let Some(admin) = admin {
        admin.abort();
    }
    if let Some(well_known) = well_known {
        well_known.abort();
    }
    retention.abort();
    pruning.abort();
    if let Some(task) = limits_health {
        task.abort();
    }
    if let Some(task) = provider_health {
        task.abort();
    }
    housekeeping.abort();
    // The refusals counted in the running minute are rows too.
    if tokio::time::timeout(config.shutdown_grace, auth.audit_sink().close())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: audit rows still queued are lost");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called — before the server listens — so a signal that arrives during
/// start-up is a graceful stop, not the default kill.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
