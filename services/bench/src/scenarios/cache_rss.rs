//! The `--scale` run's memory check: an identity server with its token,
//! session and profile caches at their caps (the server's defaults unless
//! `--cache-caps`), driven with 1.2× as many distinct tokens, sessions and
//! profiles as each cap holds, its RSS sampled from /proc; target ≤ 150 MB.
//!
//! The tokens are the seeded sessions' own: the server is given a signing
//! key the bench made, and the bench signs one access token per seeded
//! session with it (as the server would at Login, through the same
//! `identity_core::tokens::TokenKeys`). Logging in 120,000 times at cost 4
//! would take minutes; signing takes seconds.

use super::scale::{COST, psql_out, seed};
use crate::fixtures::{connect, start_identity, with_rss};
use crate::load::{Failure, Outcome, label};
use crate::options::{CacheCaps, Env};
use crate::procs::TempDir;
use crate::scrape::scrape;
use crate::stats::Recorder;
use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::{GetProfileRequest, ValidateTokenRequest};
use identity_core::tokens::{AccessClaims, Ed25519Key, TokenKeys};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The memory target with every cache full.
const TARGET_MB: f64 = 150.0;
/// How far past each cap the distinct keys go: enough that the caches are
/// full and evicting, not merely filling.
const FILL: f64 = 1.2;
/// Life of the signed tokens: the whole fill must fit in it.
const TOKEN_TTL_SECS: i64 = 3600;

#[derive(Debug, Serialize)]
pub struct CacheRss {
    pub caps: CacheCaps,
    /// Where the caps came from: the server's `--help` or `--cache-caps`.
    pub caps_from: String,
    /// Distinct sessions validated (each with a token of its own).
    pub sessions_validated: usize,
    /// Distinct profiles read with GetProfile("me").
    pub profiles_read: usize,
    pub errors: BTreeMap<String, u64>,
    pub rate_per_s: f64,
    pub idle_rss_mb: Option<f64>,
    /// The highest VmRSS sampled every 100 ms during the fill.
    pub sampled_peak_rss_mb: Option<f64>,
    /// VmHWM at the end: the kernel's own peak.
    pub peak_rss_mb: Option<f64>,
    pub target_mb: f64,
    /// Series of the server's /metrics whose name mentions a cache (none
    /// today: occupancy is then not observed).
    pub cache_metrics: BTreeMap<String, f64>,
}

/// The caps `identity serve` defaults to, from its own `--help` (what the
/// operator would read), so that the bench does not carry a copy that can
/// drift.
fn default_caps(identity: &Path) -> anyhow::Result<CacheCaps> {
    let out = Command::new(identity)
        .args(["serve", "--help"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} serve --help", identity.display()))?;
    let help = String::from_utf8_lossy(&out.stdout);
    let cap = |flag: &str| -> anyhow::Result<usize> {
        default_of(&help, flag).with_context(|| {
            format!("`identity serve --help` names no default for {flag}: pass --cache-caps")
        })
    };
    Ok(CacheCaps {
        tokens: cap("--token-cache-size")?,
        sessions: cap("--session-cache-size")?,
        profiles: cap("--profile-cache-size")?,
    })
}

/// The `[default: N]` of `flag` in clap's help: the first one after the
/// flag, before the next option.
fn default_of(help: &str, flag: &str) -> Option<usize> {
    let mut lines = help
        .lines()
        .skip_while(|l| !l.trim_start().split([' ', ',']).any(|word| word == flag));
    let first = lines.next()?;
    let entry = std::iter::once(first)
        .chain(lines.take_while(|l| !l.trim_start().starts_with('-')))
        .collect::<Vec<_>>()
        .join(" ");
    // clap wraps at its width, possibly inside `[default: N]`.
    let entry = entry.split_whitespace().collect::<Vec<_>>().join(" ");
    let from = entry.find("[default: ")? + "[default: ".len();
    let value = &entry[from..];
    value[..value.find(']')?].trim().parse().ok()
}

/// (session id, profile id) of the seeded sessions `1..=n`, in order: the
/// same expressions `scale::seed` made them with.
fn seeded_sessions(url: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let text = psql_out(
        url,
        &format!(
            "SELECT md5('scale-session-' || i)::uuid || ' ' || md5('scale-profile-' || ((i + 1) / 2))::uuid
             FROM generate_series(1, {n}) AS i ORDER BY i"
        ),
    )?;
    let rows: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let (s, p) = l.split_once(' ')?;
            Some((s.to_owned(), p.to_owned()))
        })
        .collect();
    if rows.len() != n {
        bail!("expected {n} seeded sessions, psql listed {}", rows.len());
    }
    Ok(rows)
}

/// A setting the bench passes to every server (`--server-env`), else the
/// server's default.
fn server_setting(env: &Env, key: &str, default: &str) -> String {
    env.args
        .server_env
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map_or_else(|| default.to_owned(), |(_, v)| v.clone())
}

/// Every item of `0..n` called once, `concurrency` at a time over
/// `clients`.
async fn each_once<F, Fut>(clients: &[Channel], concurrency: usize, n: usize, call: F) -> Recorder
where
    F: Fn(Channel, usize) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    futures_util::stream::iter(0..n)
        .map(|i| {
            let started = Instant::now();
            let call = call(clients[i % clients.len()].clone(), i);
            async move { (call.await, started.elapsed()) }
        })
        .buffer_unordered(concurrency.max(1))
        .fold(Recorder::default(), |mut rec, (outcome, took)| async move {
            match outcome {
                Ok(()) => rec.ok(took),
                Err(failure) => rec.error(&failure.to_string()),
            }
            rec
        })
        .await
}

pub(super) async fn cache_rss(
    env: &Env,
    db_url: &str,
    seeded: usize,
    hash: &str,
) -> anyhow::Result<CacheRss> {
    let (caps, caps_from, caps_env) = match env.args.cache_caps {
        Some(caps) => (
            caps,
            "--cache-caps",
            vec![
                ("IDENTITY_TOKEN_CACHE_SIZE", caps.tokens.to_string()),
                ("IDENTITY_SESSION_CACHE_SIZE", caps.sessions.to_string()),
                ("IDENTITY_PROFILE_CACHE_SIZE", caps.profiles.to_string()),
            ],
        ),
        // The server's defaults: started without the settings at all.
        None => (
            default_caps(&env.identity)?,
            "the server's defaults (`identity serve --help`)",
            Vec::new(),
        ),
    };
    let fill = |cap: usize| (cap as f64 * FILL).ceil() as usize;
    // Every validated session has a token of its own: one pass fills the
    // token cache and the session cache (and the profile cache with the
    // profiles' current roles, two sessions per profile).
    let sessions = fill(caps.tokens.max(caps.sessions));
    let profiles = fill(caps.profiles);
    // GetProfile reads profile k with seeded session 2k - 1's token.
    let signed = sessions.max(2 * profiles);
    let needed = signed.div_ceil(2);
    if needed > seeded {
        let t = Instant::now();
        seed(db_url, seeded + 1, needed, hash)?;
        eprintln!(
            "bench: scale: seeded up to {needed} profiles, {} sessions, for the cache fill ({:.1}s)",
            2 * needed,
            t.elapsed().as_secs_f64()
        );
    }
    let rows = seeded_sessions(db_url, signed)?;

    let dir = TempDir::new()?;
    let pem = identity_core::tokens::generate_ed25519_pem()?;
    let key_file = dir.path().join("signing-key.pem");
    std::fs::write(&key_file, pem.expose_secret())?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        // A private key: readable by its owner only, as the server expects.
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
    }
    let keys = TokenKeys::new(
        vec![Ed25519Key::from_pem(pem.expose_secret(), "bench")?],
        None,
        server_setting(env, "IDENTITY_ISSUER", "identity"),
        server_setting(env, "IDENTITY_AUDIENCE", "identity"),
        Duration::from_secs(30),
    )?;
    let t = Instant::now();
    let now = unix_now()?;
    let tokens: Vec<String> = rows
        .iter()
        .map(|(sid, profile)| {
            keys.sign(&AccessClaims {
                iss: keys.issuer().to_owned(),
                aud: keys.audience().to_owned(),
                sub: profile.clone(),
                iat: now,
                nbf: now,
                exp: now + TOKEN_TTL_SECS,
                jti: uuid::Uuid::new_v4().to_string(),
                sid: sid.clone(),
                roles: Vec::new(),
                auth_provider: "local".into(),
                auth_id: profile.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    eprintln!(
        "bench: scale: {} access tokens signed ({:.1}s)",
        tokens.len(),
        t.elapsed().as_secs_f64()
    );

    let mut vars = vec![(
        "IDENTITY_SIGNING_KEY_FILE",
        key_file.to_string_lossy().into_owned(),
    )];
    vars.extend(caps_env);
    let server = start_identity(env, db_url, dir.path(), COST, &vars)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss_mb = server.rss_mb();
    let clients = connect(&server.url(), env.args.connections).await?;
    let tokens = Arc::new(tokens);
    let concurrency = env.args.concurrency;
    let t = Instant::now();
    let (mut rec, sampled_peak_rss_mb) = with_rss(server.pid(), async {
        let validated = {
            let tokens = Arc::clone(&tokens);
            each_once(&clients, concurrency, sessions, move |c, i| {
                let access_token = tokens[i].clone();
                async move {
                    let r = AuthServiceClient::new(c)
                        .validate_token(ValidateTokenRequest { access_token })
                        .await
                        .map_err(|s| label(&s))?;
                    if r.into_inner().active {
                        Ok(())
                    } else {
                        Err(Failure::WrongAnswer)
                    }
                }
            })
            .await
        };
        // Profile k's first session is seeded session 2k - 1.
        let read = each_once(&clients, concurrency, profiles, move |c, k| {
            let token = tokens[2 * k].clone();
            async move {
                let mut request = tonic::Request::new(GetProfileRequest { id: "me".into() });
                let value = format!("Bearer {token}")
                    .parse()
                    .map_err(|_| Failure::Local("bad_header"))?;
                request.metadata_mut().insert("authorization", value);
                ProfileServiceClient::new(c)
                    .get_profile(request)
                    .await
                    .map(drop)
                    .map_err(|s| label(&s))
            }
        })
        .await;
        let mut all = validated;
        all.merge(read);
        all
    })
    .await;
    let elapsed = t.elapsed();
    let peak_rss_mb = server.peak_rss_mb();
    let cache_metrics = match server.metrics_addr() {
        Some(addr) => scrape(addr)
            .await?
            .series
            .into_iter()
            .filter(|(k, _)| k.split('{').next().is_some_and(|n| n.contains("cache")))
            .collect(),
        None => BTreeMap::new(),
    };
    let calls = rec.ok_count();
    let summary = std::mem::take(&mut rec).summarize(elapsed);
    drop(server);
    Ok(CacheRss {
        caps,
        caps_from: caps_from.to_owned(),
        sessions_validated: sessions,
        profiles_read: profiles,
        errors: summary.errors,
        rate_per_s: calls as f64 / elapsed.as_secs_f64().max(1e-9),
        idle_rss_mb,
        sampled_peak_rss_mb,
        peak_rss_mb,
        target_mb: TARGET_MB,
        cache_metrics,
    })
}

fn unix_now() -> anyhow::Result<i64> {
    Ok(i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?)
}

pub(super) fn print_cache_rss(r: &CacheRss) {
    let c = &r.caps;
    let mb = |v: Option<f64>| v.map_or("unknown".to_owned(), |v| format!("{v:.1} MiB"));
    println!();
    println!(
        "RSS at the cache caps ({} token, {} session, {} profile entries: {}): {} distinct sessions validated (a token each), {} distinct profiles read, {:.0} calls/s, errors {}",
        c.tokens,
        c.sessions,
        c.profiles,
        r.caps_from,
        r.sessions_validated,
        r.profiles_read,
        r.rate_per_s,
        r.errors.values().sum::<u64>()
    );
    let peak = r.peak_rss_mb.or(r.sampled_peak_rss_mb);
    println!(
        "  server RSS: idle {}, peak {} (VmHWM; sampled VmRSS peak {}), target ≤ {:.0} MB: {}",
        mb(r.idle_rss_mb),
        mb(r.peak_rss_mb),
        mb(r.sampled_peak_rss_mb),
        r.target_mb,
        match peak {
            Some(p) if p <= r.target_mb => "met",
            Some(_) => "MISSED",
            None => "not measured",
        }
    );
    if r.cache_metrics.is_empty() {
        println!(
            "  cache occupancy not observed: the server's /metrics has no cache series; the caches were sent {FILL}× their caps in distinct keys"
        );
    } else {
        for (series, value) in &r.cache_metrics {
            println!("  {series} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_default_from_clap_help() {
        let help = "\
      --token-cache-size <TOKEN_CACHE_SIZE>
          Verified access tokens kept in memory (0: verify every signature)

          [env: IDENTITY_TOKEN_CACHE_SIZE=]
          [default: 20000]

      --session-cache-size <SESSION_CACHE_SIZE>
          Sessions whose state is kept in memory [env: IDENTITY_SESSION_CACHE_SIZE=]

      --profile-cache-size <PROFILE_CACHE_SIZE>
          Profiles kept [env: IDENTITY_PROFILE_CACHE_SIZE=] [default: 10000]
";
        assert_eq!(default_of(help, "--token-cache-size"), Some(20_000));
        // No default of its own: not the next option's.
        assert_eq!(default_of(help, "--session-cache-size"), None);
        assert_eq!(default_of(help, "--profile-cache-size"), Some(10_000));
        assert_eq!(default_of(help, "--missing"), None);
    }
}
