//! `bench --scale N`: does latency hold as the tables grow? The same calls
//! measured with 10,000 seeded profiles and with N (and twice as many
//! sessions), every cache off so that each call reaches PostgreSQL, and
//! the plan of each hot query shown. ExchangeToken is measured against the
//! bench's own provider fixture (`crate::provider`). Then a second server,
//! caches at their caps, for its RSS with every cache full
//! (`super::cache_rss`).

use super::cache_rss::{CacheRss, cache_rss, print_cache_rss};
use crate::fixtures::{PASSWORD, Session, connect, sessions, start_identity};
use crate::load::{self, Failure, Outcome, Plan, label};
use crate::options::Env;
use crate::procs::{Database, TempDir};
use crate::provider::{Provider, Signer};
use crate::stats::Summary;
use anyhow::{Context as _, bail};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::{
    ExchangeTokenRequest, GetProfileRequest, ListProfilesRequest, LoginRequest, RefreshRequest,
    RegisterRequest, ValidateTokenRequest,
};
use identity_core::provider::TOKEN_TYPE_JWT;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use tonic::transport::Channel;

/// The smaller table size every run is compared against.
const BASE: usize = 10_000;
/// bcrypt cost of the run: the seeded accounts share one hash at this cost
/// and the server hashes at it, so Login measures the lookup, not bcrypt.
pub(super) const COST: u32 = 4;
const ADMIN: &str = "scale-admin@example.com";

#[derive(Debug, Serialize)]
pub struct ScaleReport {
    pub sizes: [usize; 2],
    pub bcrypt_cost: u32,
    /// scenario → [summary at sizes[0], summary at sizes[1]]
    pub scenarios: BTreeMap<&'static str, Vec<Summary>>,
    pub explain: BTreeMap<&'static str, String>,
    /// Profiles ExchangeToken created at each size (they stay in the
    /// table: the next size is measured with them).
    pub exchange_provisioned: [usize; 2],
    /// JWK set fetches the provider fixture served over the whole run.
    pub provider_jwks_fetches: u64,
    pub cache_rss: CacheRss,
}

pub(super) fn psql_out(url: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-At", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("psql (the PostgreSQL client) is needed: `make postgres` installs it")?;
    if !out.status.success() {
        bail!(
            "psql failed: {}: {}",
            sql.chars().take(120).collect::<String>(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Profiles `from..=to` with a local credential each (all sharing `hash`),
/// and two live sessions each with one refresh token per session. One
/// `INSERT … SELECT generate_series` per table: PostgreSQL makes the rows.
pub(super) fn seed(url: &str, from: usize, to: usize, hash: &str) -> anyhow::Result<()> {
    if from > to {
        return Ok(());
    }
    let profile = "md5('scale-profile-' || i)::uuid";
    psql_out(
        url,
        &format!(
            "BEGIN;
             INSERT INTO profiles (id, auth_provider, auth_id, email, display_name, created_at, updated_at)
               SELECT {profile}, 'local', {profile}::text, 'scale' || i || '@example.com',
                      'Scale User ' || i, now(), now()
               FROM generate_series({from}, {to}) AS i;
             INSERT INTO credentials (profile_id, email, password_hash, created_at, updated_at)
               SELECT {profile}, 'scale' || i || '@example.com', '{hash}', now(), now()
               FROM generate_series({from}, {to}) AS i;
             INSERT INTO sessions (id, profile_id, created_at, expires_at, last_used_at)
               SELECT md5('scale-session-' || i)::uuid, md5('scale-profile-' || ((i + 1) / 2))::uuid,
                      now(), now() + interval '30 days', now()
               FROM generate_series({}, {}) AS i;
             INSERT INTO refresh_tokens (token_hash, session_id, created_at)
               SELECT md5('scale-refresh-' || i) || md5('scale-refresh2-' || i),
                      md5('scale-session-' || i)::uuid, now()
               FROM generate_series({}, {}) AS i;
             COMMIT;
             ANALYZE;",
            2 * from - 1,
            2 * to,
            2 * from - 1,
            2 * to
        ),
    )?;
    Ok(())
}

/// The plans of the hot queries, as the store writes them (diesel), with
/// values from the seeded rows.
fn explain(
    url: &str,
    n: usize,
    deep_after: &str,
) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let id = format!("md5('scale-profile-{}')::uuid", n / 2);
    let queries: [(&'static str, String); 8] = [
        (
            "Login: credential by email",
            format!(
                "SELECT * FROM credentials WHERE email = 'scale{}@example.com'",
                n / 2
            ),
        ),
        (
            "ExchangeToken: profile by provider and auth_id",
            "SELECT * FROM profiles WHERE auth_provider = 'better-auth' AND auth_id = 'bench-0'"
                .to_owned(),
        ),
        (
            "GetProfile: profile by id",
            format!("SELECT * FROM profiles WHERE id = {id}"),
        ),
        (
            "ValidateToken (uncached): session by id",
            format!(
                "SELECT * FROM sessions WHERE id = md5('scale-session-{}')::uuid",
                n / 2
            ),
        ),
        (
            "Refresh: refresh token by hash",
            format!(
                "SELECT * FROM refresh_tokens WHERE token_hash = md5('scale-refresh-{0}') || md5('scale-refresh2-{0}')",
                n / 2
            ),
        ),
        (
            "Refresh: live sessions of a profile",
            format!(
                "SELECT * FROM sessions WHERE profile_id = {id} AND revoked_at IS NULL AND expires_at > now()"
            ),
        ),
        (
            "ListProfiles: first page",
            "SELECT * FROM profiles ORDER BY id ASC LIMIT 51".to_owned(),
        ),
        (
            "ListProfiles: deep page",
            format!("SELECT * FROM profiles WHERE id > '{deep_after}' ORDER BY id ASC LIMIT 51"),
        ),
    ];
    let mut plans = BTreeMap::new();
    for (name, sql) in queries {
        plans.insert(
            name,
            psql_out(url, &format!("EXPLAIN {sql}"))?.trim().to_owned(),
        );
    }
    Ok(plans)
}

fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The page token `depth` pages of 100 in (or the last one there is), and
/// the id the page starts after.
async fn deep_token(
    channel: &Channel,
    admin: &str,
    depth: usize,
) -> anyhow::Result<(String, String)> {
    let mut client = ProfileServiceClient::new(channel.clone());
    let (mut token, mut after) = (String::new(), String::new());
    for _ in 0..depth.max(1) {
        let page = client
            .list_profiles(bearer(
                admin,
                ListProfilesRequest {
                    page_size: 100,
                    page_token: token.clone(),
                    filter: String::new(),
                },
            ))
            .await?
            .into_inner();
        if page.next_page_token.is_empty() {
            break;
        }
        after = page
            .profiles
            .last()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        token = page.next_page_token;
    }
    Ok((token, after))
}

/// What every phase's calls draw on, made once.
struct Callers {
    /// Signed-in sessions (ValidateToken, GetProfile).
    pool: Arc<Vec<Session>>,
    /// An admin's access token (ListProfiles).
    admin: String,
    /// One refresh token per stream, each its session's latest.
    current: Arc<Vec<tokio::sync::Mutex<String>>>,
    /// Provider tokens for ExchangeToken.
    signer: Arc<Signer>,
}

/// One phase: every scenario once, closed loop, at the table's size now.
async fn measure(
    env: &Env,
    url: &str,
    callers: &Callers,
    seeded: usize,
    deep: &str,
) -> anyhow::Result<BTreeMap<&'static str, Summary>> {
    let Callers {
        pool,
        admin,
        current,
        signer,
    } = callers;
    let clients = connect(url, env.args.connections).await?;
    let plan: Plan = env.plan(env.args.concurrency);
    let mut out = BTreeMap::new();
    let admin: Arc<str> = Arc::from(admin.as_str());
    let deep: Arc<str> = Arc::from(deep);

    let tokens = Arc::clone(pool);
    out.insert(
        "validate_nocache",
        load::drive(plan, &clients, move |c, n| {
            let token = tokens[n as usize % tokens.len()].access.clone();
            async move {
                let r = AuthServiceClient::new(c)
                    .validate_token(ValidateTokenRequest {
                        access_token: token,
                    })
                    .await
                    .map_err(|s| label(&s))?;
                if r.into_inner().active {
                    Ok(())
                } else {
                    Err(Failure::WrongAnswer)
                }
            }
        })
        .await,
    );
    let tokens = Arc::clone(pool);
    out.insert(
        "get_profile_uncached",
        load::drive(plan, &clients, move |c, n| {
            let token = tokens[n as usize % tokens.len()].access.clone();
            async move {
                ProfileServiceClient::new(c)
                    .get_profile(bearer(&token, GetProfileRequest { id: "me".into() }))
                    .await
                    .map(drop)
                    .map_err(|s| label(&s))
            }
        })
        .await,
    );
    for (name, page) in [
        ("list_profiles_first_page", None),
        ("list_profiles_deep_page", Some(deep)),
    ] {
        let admin = Arc::clone(&admin);
        out.insert(
            name,
            load::drive(plan, &clients, move |c, _| {
                let (admin, page) = (Arc::clone(&admin), page.clone());
                async move {
                    let r = ProfileServiceClient::new(c)
                        .list_profiles(bearer(
                            &admin,
                            ListProfilesRequest {
                                page_size: 50,
                                page_token: page.map(|p| p.to_string()).unwrap_or_default(),
                                filter: String::new(),
                            },
                        ))
                        .await
                        .map_err(|s| label(&s))?;
                    if r.into_inner().profiles.is_empty() {
                        Err(Failure::WrongAnswer)
                    } else {
                        Ok(())
                    }
                }
            })
            .await,
        );
    }
    // Login to seeded accounts spread over the whole table.
    out.insert(
        "login",
        load::drive(plan, &clients, move |c, n| {
            let i = (n as usize).wrapping_mul(7919) % seeded + 1;
            async move {
                AuthServiceClient::new(c)
                    .login(LoginRequest {
                        email: format!("scale{i}@example.com"),
                        password: PASSWORD.into(),
                        ..Default::default()
                    })
                    .await
                    .map(drop)
                    .map_err(|s| label(&s))
            }
        })
        .await,
    );
    let current = Arc::clone(current);
    out.insert(
        "refresh",
        load::drive(plan, &clients, move |c, n| {
            let current = Arc::clone(&current);
            async move { refresh(c, &current, n).await }
        })
        .await,
    );
    // Last: every call adds a profile, which the other scenarios at this
    // size would otherwise be measured with.
    let signer = Arc::clone(signer);
    out.insert(
        "exchange_token_new_user",
        load::drive(plan, &clients, move |c, _| {
            let token = signer.token();
            async move {
                let subject_token = token.map_err(|_| Failure::Local("signing_failed"))?;
                let r = AuthServiceClient::new(c)
                    .exchange_token(ExchangeTokenRequest {
                        subject_token,
                        subject_token_type: TOKEN_TYPE_JWT.into(),
                    })
                    .await
                    .map_err(|s| label(&s))?;
                // A never-seen subject must provision a profile.
                if r.into_inner().created {
                    Ok(())
                } else {
                    Err(Failure::WrongAnswer)
                }
            }
        })
        .await,
    );
    Ok(out)
}

/// Profiles ExchangeToken created so far (the only ones of its provider).
fn provisioned(url: &str) -> anyhow::Result<usize> {
    let n = psql_out(
        url,
        "SELECT count(*) FROM profiles WHERE auth_provider = 'better-auth'",
    )?;
    n.trim()
        .parse()
        .with_context(|| format!("count of provisioned profiles: {n}"))
}

async fn refresh(c: Channel, current: &[tokio::sync::Mutex<String>], n: u64) -> Outcome {
    let mut token = current[n as usize % current.len()].lock().await;
    let pair = AuthServiceClient::new(c)
        .refresh(RefreshRequest {
            refresh_token: token.clone(),
        })
        .await
        .map_err(|s| label(&s))?
        .into_inner()
        .tokens
        .ok_or(Failure::WrongAnswer)?;
    *token = pair.refresh_token;
    Ok(())
}

pub async fn scale(env: &Env, n: usize) -> anyhow::Result<ScaleReport> {
    let mut sizes = [BASE.min(n), BASE.max(n)];
    sizes.sort_unstable();
    let db = Database::create(&env.args.pg_url)?;
    let dir = TempDir::new()?;
    let caches_off = [
        ("IDENTITY_TOKEN_CACHE_SIZE", "0".to_owned()),
        ("IDENTITY_SESSION_CACHE_SIZE", "0".to_owned()),
        ("IDENTITY_PROFILE_CACHE_SIZE", "0".to_owned()),
        ("IDENTITY_BOOTSTRAP_ADMINS", ADMIN.to_owned()),
    ];
    let provider = Provider::start().await?;
    let mut vars = caches_off.to_vec();
    vars.extend(provider.server_env());
    let server = start_identity(env, &db.url, dir.path(), COST, &vars)?;
    let url = server.url();
    let channel = connect(&url, 1).await?.remove(0);
    let admin = AuthServiceClient::new(channel.clone())
        .register(RegisterRequest {
            email: ADMIN.into(),
            password: PASSWORD.into(),
            display_name: "Scale Admin".into(),
        })
        .await?
        .into_inner()
        .tokens
        .context("tokens")?
        .access_token;
    let pool = Arc::new(
        sessions(
            &url,
            env.sessions.max(env.args.concurrency),
            (env.sessions / 20).max(1),
        )
        .await?,
    );
    // One hash for every seeded account: hashing N passwords would take
    // longer than the run.
    let hash = bcrypt::hash(PASSWORD, COST)?;
    // Refresh: one pool session per stream, each spending its latest token,
    // kept from one size to the next (a spent token presented again is a
    // reuse: the server revokes the session).
    let current: Arc<Vec<tokio::sync::Mutex<String>>> = Arc::new(
        pool.iter()
            .take(env.args.concurrency.max(1))
            .map(|s| tokio::sync::Mutex::new(s.refresh.clone()))
            .collect(),
    );
    let callers = Callers {
        pool,
        admin,
        current,
        signer: Arc::clone(&provider.signer),
    };
    let mut scenarios: BTreeMap<&'static str, Vec<Summary>> = BTreeMap::new();
    let mut seeded = 0;
    let mut deep_after = String::new();
    let mut exchange_provisioned = [0; 2];
    for (k, size) in sizes.into_iter().enumerate() {
        let t = std::time::Instant::now();
        seed(&db.url, seeded + 1, size, &hash)?;
        seeded = size;
        eprintln!(
            "bench: scale: {size} profiles, {} sessions seeded ({:.1}s)",
            2 * size,
            t.elapsed().as_secs_f64()
        );
        // 90 % of the way through the table, in pages of 100.
        let (deep, after) = deep_token(&channel, &callers.admin, size * 9 / 10 / 100).await?;
        deep_after = after;
        let before = provisioned(&db.url)?;
        let measured = measure(env, &url, &callers, size, &deep).await?;
        for (name, summary) in measured {
            scenarios.entry(name).or_default().push(summary);
        }
        exchange_provisioned[k] = provisioned(&db.url)?.saturating_sub(before);
    }
    let explain = explain(&db.url, seeded, &deep_after)?;
    drop(server);
    let provider_jwks_fetches = provider.jwks_served();
    drop(provider);
    let cache_rss = cache_rss(env, &db.url, seeded, &hash).await?;
    Ok(ScaleReport {
        sizes,
        bcrypt_cost: COST,
        scenarios,
        explain,
        exchange_provisioned,
        provider_jwks_fetches,
        cache_rss,
    })
}

pub fn print_scale(r: &ScaleReport) {
    let [a, b] = r.sizes;
    println!();
    println!(
        "scale: {a} and {b} seeded profiles (with a credential each; one bcrypt hash at cost {} shared by all, the server at cost {} so Login measures the lookup), twice as many sessions; token, session and profile caches off; Rust generator, closed loop",
        r.bcrypt_cost, r.bcrypt_cost
    );
    println!();
    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}  errors",
        "scenario",
        format!("req/s@{a}"),
        format!("req/s@{b}"),
        format!("p99@{a}"),
        format!("p99@{b}"),
        "ratio",
        "≤ 1.5"
    );
    for (name, s) in &r.scenarios {
        let (Some(x), Some(y)) = (s.first(), s.get(1)) else {
            continue;
        };
        let ratio = y.latency_ms.p99 / x.latency_ms.p99.max(1e-3);
        println!(
            "{:<26} {:>10.1} {:>10.1} {:>10.2} {:>10.2} {:>8.3} {:>8}  {}",
            name,
            x.rps,
            y.rps,
            x.latency_ms.p99,
            y.latency_ms.p99,
            ratio,
            if ratio <= 1.5 { "met" } else { "MISSED" },
            x.error_count() + y.error_count()
        );
    }
    println!();
    println!("plans of the hot queries at {b} profiles (EXPLAIN, written as the store's queries):");
    for (name, plan) in &r.explain {
        println!("  {name}:");
        for line in plan.lines() {
            println!("    {line}");
        }
    }
    println!(
        "exchange_token_new_user: ExchangeToken of a provider JWT (EdDSA, signed by the bench) for a never-seen subject each call, against the bench's own provider fixture (one Ed25519 key served as a JWK set on loopback; JWK set fetches by the server: {}); {} and {} profiles provisioned at {a} and {b}, left in the table",
        r.provider_jwks_fetches, r.exchange_provisioned[0], r.exchange_provisioned[1]
    );
    print_cache_rss(&r.cache_rss);
}

/// Runs the scale comparison, prints it and writes its JSON; fails on any
/// error.
pub async fn run_scale(env: &Env, n: usize) -> anyhow::Result<()> {
    let report = scale(env, n).await?;
    print_scale(&report);
    if let Some(dir) = env.args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&env.args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", env.args.out.display()))?;
    eprintln!("bench: wrote {}", env.args.out.display());
    let errors: u64 = report
        .scenarios
        .values()
        .flatten()
        .map(Summary::error_count)
        .sum::<u64>()
        + report.cache_rss.errors.values().sum::<u64>();
    if errors > 0 {
        bail!("the scale run had {errors} errors");
    }
    Ok(())
}
