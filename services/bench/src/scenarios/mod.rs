//! The scenarios of `make bench` and the order they run in.

mod better_auth;
mod cache_rss;
mod client;
mod flood;
mod login;
mod prepared;
mod propagation;
mod refresh;
pub mod scale;
mod side_by_side;
pub mod soak;

use crate::options::Env;
use crate::report::{Bcrypt, Propagation, Row};
use better_auth::better_auth_get_session;
use client::{client_verify, revocation_to_client};
use flood::flood;
use login::{login, measure_bcrypt};
use prepared::{
    Variant, prepare_echo, prepare_ext_authz_check, prepare_get_profile, prepare_validate,
};
use propagation::revocation_propagation;
use refresh::refresh;
use side_by_side::side_by_side;
use std::collections::BTreeMap;
use std::time::Instant;

/// Measured in alternation, round by round (see `side_by_side`).
const SIDE_BY_SIDE: &[&str] = &["echo", "validate", "get_profile", "ext_authz_check"];

/// Every scenario `--scenarios` knows.
const ALL: &[&str] = &[
    "echo",
    "validate",
    "validate_mixed",
    "validate_nocache",
    "get_profile",
    "ext_authz_check",
    "refresh",
    "login",
    "validate_under_login_flood",
    "revocation_propagation",
    "client_verify",
    "revocation_to_client",
    "better_auth_get_session",
];

/// The scenarios named on the command line (all when none is), each known.
pub fn select(names: &[String]) -> anyhow::Result<Vec<String>> {
    Ok(if names.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        for s in names {
            if !ALL.contains(&s.as_str()) {
                anyhow::bail!("unknown scenario `{s}`; known: {}", ALL.join(", "));
            }
        }
        names.to_vec()
    })
}

/// What the scenarios measured, before the report adds its ratios and
/// targets.
pub struct Results {
    pub bcrypt: Option<Bcrypt>,
    pub rows: Vec<Row>,
    /// The ratios measured side by side.
    pub ratios: BTreeMap<&'static str, f64>,
    pub propagation: Option<Propagation>,
    /// Scenarios that could not run here, with the reason.
    pub skipped: BTreeMap<String, String>,
}

/// Runs the scenarios `select` returned on a machine of `cores` cores.
pub async fn run(env: &Env, selected: &[String], cores: usize) -> anyhow::Result<Results> {
    let wants = |name: &str| selected.iter().any(|s| s == name);

    // bcrypt first, on a quiet machine.
    let bcrypt = if wants("login") || wants("validate_under_login_flood") {
        let b = measure_bcrypt(env.args.bcrypt_cost, cores)?;
        eprintln!(
            "bench: bcrypt cost {}: {:.1} ms single-threaded → ceiling {:.2} logins/s on {} cores",
            b.cost, b.single_thread_ms, b.ceiling_per_s, cores
        );
        Some(b)
    } else {
        None
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut ratios = BTreeMap::new();
    let mut propagation = None;
    let mut skipped = BTreeMap::new();
    // echo, validate and get_profile run in alternation (their ratios are
    // the targets); the others one after another.
    let alternating: Vec<&String> = selected
        .iter()
        .filter(|n| SIDE_BY_SIDE.contains(&n.as_str()))
        .collect();
    if !alternating.is_empty() {
        let t = Instant::now();
        let mut prepared = Vec::new();
        for name in &alternating {
            eprintln!("bench: preparing {name} ...");
            prepared.push(match name.as_str() {
                "echo" => prepare_echo(env).await?,
                "validate" => prepare_validate(env, Variant::Valid).await?,
                "ext_authz_check" => prepare_ext_authz_check(env).await?,
                _ => prepare_get_profile(env).await?,
            });
        }
        let rounds = if env.args.quick { 2 } else { 5 };
        eprintln!(
            "bench: {} side by side, {rounds} rounds ...",
            alternating.len()
        );
        let (side_rows, side_ratios) = side_by_side(env, &prepared, rounds).await;
        drop(prepared);
        rows.extend(side_rows);
        ratios.extend(side_ratios);
        eprintln!(
            "bench: side by side done in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    for name in selected
        .iter()
        .filter(|n| !SIDE_BY_SIDE.contains(&n.as_str()))
    {
        eprintln!("bench: {name} ...");
        let t = Instant::now();
        match name.as_str() {
            "validate_mixed" => rows.push(
                prepare_validate(env, Variant::Mixed)
                    .await?
                    .alone(env)
                    .await,
            ),
            "validate_nocache" => rows.push(
                prepare_validate(env, Variant::NoCache)
                    .await?
                    .alone(env)
                    .await,
            ),
            "refresh" => rows.push(refresh(env).await?),
            "login" => rows.push(login(env).await?),
            "validate_under_login_flood" => {
                let validate_rps = rows
                    .iter()
                    .find(|r| r.scenario == "validate")
                    .map(|r| r.summary.rps);
                rows.extend(flood(env, validate_rps).await?);
            }
            "revocation_propagation" => {
                let (row, p) = revocation_propagation(env).await?;
                rows.push(row);
                propagation = Some(p);
            }
            "client_verify" => rows.extend(client_verify(env).await?),
            "revocation_to_client" => rows.push(revocation_to_client(env).await?),
            "better_auth_get_session" => match better_auth_get_session(env).await? {
                better_auth::Outcome::Measured {
                    rows: measured,
                    ratio,
                } => {
                    rows.extend(measured);
                    ratios.insert("better_auth_get_session_over_validate", ratio);
                }
                better_auth::Outcome::Skipped(reason) => {
                    eprintln!("bench: {name} skipped: {reason}");
                    skipped.insert(name.clone(), reason);
                }
            },
            _ => unreachable!("checked by select"),
        }
        eprintln!("bench: {name} done in {:.1}s", t.elapsed().as_secs_f64());
    }
    Ok(Results {
        bcrypt,
        rows,
        ratios,
        propagation,
        skipped,
    })
}
