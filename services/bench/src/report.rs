//! What a run reports: one row per scenario, the ratios and the targets
//! they are held to, as a table on stdout and as JSON.

use crate::options::Env;
use crate::procs::Machine;
use crate::scenarios::Results;
use crate::stats::Summary;
use anyhow::Context as _;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// One scenario's line in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub connections: usize,
    pub concurrency: usize,
    /// Open-loop rate, when fixed.
    pub rate: Option<f64>,
    #[serde(flatten)]
    pub summary: Summary,
    pub rss_idle_mb: Option<f64>,
    pub rss_load_mb: Option<f64>,
    /// What drove the scenario: `h2load` or `rust` (this process).
    pub generator: &'static str,
    /// The generator's CPU (user + system) over the window, % of all cores.
    pub generator_cpu_pct: Option<f64>,
    /// The server's, the same way.
    pub server_cpu_pct: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub notes: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bcrypt {
    pub cost: u32,
    pub single_thread_ms: f64,
    /// cores ÷ single-thread time.
    pub ceiling_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Propagation {
    pub samples: usize,
    /// From the Logout answer on A to B's first refusal.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// From sending Logout to A, for comparison.
    pub p50_from_request_ms: f64,
    pub p99_from_request_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub target: String,
    pub measured: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub bcrypt: Option<Bcrypt>,
    pub scenarios: Vec<Row>,
    pub propagation: Option<Propagation>,
    pub ratios: BTreeMap<&'static str, f64>,
    pub targets: Vec<Target>,
    /// Scenarios that could not run here, with the reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped: BTreeMap<String, String>,
    pub elapsed_s: f64,
}

impl Report {
    /// The scenarios' results with the ratios across scenarios and the
    /// targets; `started` is when the run began.
    pub fn new(machine: Machine, env: &Env, results: Results, started: Instant) -> Report {
        let Results {
            bcrypt,
            rows,
            mut ratios,
            propagation,
            skipped,
        } = results;
        let find = |name: &str| rows.iter().find(|r| r.scenario == name);
        if let (Some(l), Some(b)) = (find("login"), &bcrypt) {
            ratios.insert("login_over_bcrypt_ceiling", l.summary.rps / b.ceiling_per_s);
        }
        if let (Some(q), Some(f)) = (
            find("validate_quiet_fixed_rate"),
            find("validate_under_login_flood"),
        ) {
            ratios.insert(
                "flood_p99_over_quiet_p99",
                f.summary.latency_ms.p99 / q.summary.latency_ms.p99.max(1e-3),
            );
        }
        let targets = targets(&rows, &ratios, propagation.as_ref());
        Report {
            machine,
            quick: env.args.quick,
            duration_s: env.duration.as_secs_f64(),
            warmup_s: env.warmup.as_secs_f64(),
            bcrypt,
            scenarios: rows,
            propagation,
            ratios,
            targets,
            skipped,
            elapsed_s: started.elapsed().as_secs_f64(),
        }
    }

    /// The whole report as JSON at `out`, its folder created.
    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
        Ok(())
    }
}

pub(crate) fn row(env: &Env, name: &str, concurrency: usize, summary: Summary) -> Row {
    Row {
        scenario: name.into(),
        connections: env.args.connections,
        concurrency,
        rate: None,
        summary,
        rss_idle_mb: None,
        rss_load_mb: None,
        generator: "rust",
        generator_cpu_pct: None,
        server_cpu_pct: None,
        notes: BTreeMap::new(),
    }
}

fn targets(
    rows: &[Row],
    ratios: &BTreeMap<&'static str, f64>,
    propagation: Option<&Propagation>,
) -> Vec<Target> {
    let find = |name: &str| rows.iter().find(|r| r.scenario == name);
    let at_least = |name, target: f64, v: Option<f64>| Target {
        name,
        target: format!("≥ {target}"),
        measured: v,
        met: v.map(|v| v >= target),
    };
    let at_most = |name, target: f64, unit: &str, v: Option<f64>| Target {
        name,
        target: format!("≤ {target}{unit}"),
        measured: v,
        met: v.map(|v| v <= target),
    };
    let validate = find("validate");
    vec![
        at_least(
            "validate ÷ echo (req/s)",
            0.8,
            ratios.get("validate_over_echo").copied(),
        ),
        at_most(
            "validate p99 at 64 streams",
            5.0,
            " ms",
            validate
                .filter(|r| r.concurrency == 64)
                .map(|r| r.summary.latency_ms.p99),
        ),
        at_most(
            "flood p99 ÷ quiet p99",
            2.0,
            "",
            ratios.get("flood_p99_over_quiet_p99").copied(),
        ),
        at_least(
            "login ÷ bcrypt ceiling",
            0.9,
            ratios.get("login_over_bcrypt_ceiling").copied(),
        ),
        at_least(
            "get_profile ÷ echo (req/s)",
            0.7,
            ratios.get("get_profile_over_echo").copied(),
        ),
        at_least(
            "ext_authz Check ÷ echo (req/s)",
            0.8,
            ratios.get("ext_authz_check_over_echo").copied(),
        ),
        at_most(
            "revocation propagation p99",
            1000.0,
            " ms",
            propagation.map(|p| p.p99_ms),
        ),
        at_least(
            "client_verify cached (verifications/s, one core)",
            500_000.0,
            find("client_verify_cached").map(|r| r.summary.rps),
        ),
        at_least(
            "client_verify first-seen (verifications/s, one core)",
            20_000.0,
            find("client_verify_first_seen").map(|r| r.summary.rps),
        ),
        at_most(
            "revocation_to_client p99",
            50.0,
            " ms",
            find("revocation_to_client").map(|r| r.summary.latency_ms.p99),
        ),
        at_most(
            "server RSS idle",
            30.0,
            " MB",
            // identity's servers only: not the baselines.
            rows.iter()
                .filter(|r| !matches!(r.scenario.as_str(), "echo" | "better_auth_get_session"))
                .filter_map(|r| r.rss_idle_mb)
                .reduce(f64::max),
        ),
        at_most(
            "server RSS under validate load",
            100.0,
            " MB",
            validate.and_then(|r| r.rss_load_mb),
        ),
    ]
}

pub fn print_report(report: &Report) {
    let m = &report.machine;
    println!();
    println!(
        "identity bench — {} cores, {}, {:.1} GiB, Linux {}{}",
        m.cores,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        if report.quick { " (QUICK)" } else { "" }
    );
    println!(
        "window {:.1}s after {:.1}s warm-up per scenario; latency in ms; RSS in MiB (idle / peak under load); \
         CPU% of all cores over the window (generator / server); gen: what drove the scenario (h2load answers \
         checked by the server's count of non-OK gRPC answers)",
        report.duration_s, report.warmup_s
    );
    println!();
    println!(
        "{:<28} {:<6} {:>5} {:>7} {:>10} {:>7} {:>7} {:>7} {:>8} {:>8}  {:<16} {:>13} {:>11}",
        "scenario",
        "gen",
        "conns",
        "streams",
        "req/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "errors",
        "RSS",
        "CPU% gen/srv"
    );
    for r in &report.scenarios {
        let l = &r.summary.latency_ms;
        let errors = if r.summary.errors.is_empty() {
            "0".to_owned()
        } else {
            r.summary
                .errors
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let streams = match r.rate {
            Some(rate) => format!("@{rate:.0}/s"),
            None => r.concurrency.to_string(),
        };
        let rss = format!(
            "{} / {}",
            r.rss_idle_mb.map_or("-".into(), |v| format!("{v:.1}")),
            r.rss_load_mb.map_or("-".into(), |v| format!("{v:.1}"))
        );
        let cpu = format!(
            "{} / {}",
            r.generator_cpu_pct
                .map_or("-".into(), |v| format!("{v:.0}")),
            r.server_cpu_pct.map_or("-".into(), |v| format!("{v:.0}"))
        );
        println!(
            "{:<28} {:<6} {:>5} {:>7} {:>10.1} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>8.2}  {:<16} {:>13} {:>11}",
            r.scenario,
            r.generator,
            r.connections,
            streams,
            r.summary.rps,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            errors,
            rss,
            cpu
        );
    }
    println!();
    if let Some(b) = &report.bcrypt {
        println!(
            "bcrypt cost {}: {:.1} ms single-threaded → ceiling {:.2} logins/s ({} cores ÷ {:.1} ms)",
            b.cost, b.single_thread_ms, b.ceiling_per_s, m.cores, b.single_thread_ms
        );
    }
    if let Some(p) = &report.propagation {
        println!(
            "revocation propagation (A revokes, B refuses), {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from the Logout request: p50 {:.2}, p99 {:.2})",
            p.samples, p.p50_ms, p.p99_ms, p.max_ms, p.p50_from_request_ms, p.p99_from_request_ms
        );
    }
    if let Some(r) = report
        .scenarios
        .iter()
        .find(|r| r.scenario == "validate_under_login_flood")
    {
        let note = |k: &str| r.notes.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
        println!(
            "login flood: {} logins in flight at cost {}: {:.2} logins/s completed, {} shed, {} failed",
            note("flood_logins_in_flight"),
            note("flood_bcrypt_cost"),
            note("flood_logins_per_s"),
            note("flood_shed_total"),
            note("flood_failed_total")
        );
        let windows = |name: &str| {
            report
                .scenarios
                .iter()
                .find(|r| r.scenario == name)
                .and_then(|r| r.notes.get("p99_ms_per_window"))
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        println!(
            "flood comparison driven by {}; p99 ms per window: quiet {}, flooded {} (each side: its median window)",
            r.notes
                .get("generator")
                .and_then(|v| v.as_str())
                .unwrap_or("rust"),
            windows("validate_quiet_fixed_rate"),
            windows("validate_under_login_flood"),
        );
    }
    println!();
    let generator_of = |name: &str| {
        report
            .scenarios
            .iter()
            .find(|r| r.scenario == name)
            .map_or("-", |r| r.generator)
    };
    println!(
        "ratios (measured side by side in this run; req/s ratios from {} windows, median of rounds):",
        generator_of("echo")
    );
    for (k, v) in &report.ratios {
        println!("  {k:<28} {v:>8.3}");
    }
    println!();
    println!("targets:");
    for t in &report.targets {
        let measured = t
            .measured
            .map_or("not measured".into(), |v| format!("{v:.3}"));
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!(
            "  {:<52} {:>10}  {:>14}  {}",
            t.name, t.target, measured, verdict
        );
    }
    for (name, reason) in &report.skipped {
        println!();
        println!("{name}: skipped: {reason}");
    }
    let errors: u64 = report
        .scenarios
        .iter()
        .map(|r| r.summary.error_count())
        .sum();
    println!();
    println!("errors: {errors}; elapsed {:.1}s", report.elapsed_s);
}
