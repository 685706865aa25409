//! The scenarios whose ratios are targets, measured in alternation.

use super::prepared::{Prepared, Window};
use crate::options::Env;
use crate::report::Row;
use crate::stats::Recorder;
use std::collections::BTreeMap;
use std::time::Duration;

/// The scenarios whose ratios matter, measured in alternation: every round
/// runs each for a slice of the window, in a rotating order, so that
/// whatever else the machine does hits them alike. Each ratio is the median
/// of the per-round ratios; each row merges its rounds.
pub(super) async fn side_by_side(
    env: &Env,
    prepared: &[Prepared],
    rounds: usize,
) -> (Vec<Row>, BTreeMap<&'static str, f64>) {
    let slice = env.duration.div_f64(rounds as f64);
    let mut samples: Vec<Vec<Recorder>> = prepared.iter().map(|_| Vec::new()).collect();
    let mut rps: Vec<Vec<f64>> = prepared.iter().map(|_| Vec::new()).collect();
    let mut peaks: Vec<Option<f64>> = vec![None; prepared.len()];
    // CPU shares (generator, server) per round.
    let mut cpu: Vec<Vec<(Option<f64>, Option<f64>)>> =
        prepared.iter().map(|_| Vec::new()).collect();
    let mut elapsed: Vec<Duration> = vec![Duration::ZERO; prepared.len()];
    for round in 0..rounds {
        for k in 0..prepared.len() {
            let i = (round + k) % prepared.len();
            let plan = env.round_plan(round, slice);
            let w = prepared[i].window(env, plan).await;
            let (rec, peak) = (w.rec, w.peak_rss_mb);
            cpu[i].push((w.generator_cpu_pct, w.server_cpu_pct));
            elapsed[i] += w.elapsed;
            rps[i].push(rec.ok_count() as f64 / w.elapsed.as_secs_f64().max(1e-9));
            samples[i].push(rec);
            peaks[i] = match (peaks[i], peak) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let index = |name: &str| prepared.iter().position(|p| p.name == name);
    let mut ratios = BTreeMap::new();
    // A ratio of two generators' figures measures the generators: none then.
    let same_generator = |a: usize, b: usize| {
        let same = prepared[a].by_h2load(env) == prepared[b].by_h2load(env);
        if !same {
            eprintln!(
                "bench: {} and {} were driven by different generators; no ratio",
                prepared[a].name, prepared[b].name
            );
        }
        same
    };
    let per_round = |a: usize, b: usize| {
        median(
            rps[a]
                .iter()
                .zip(&rps[b])
                .map(|(x, y)| x / y.max(1e-9))
                .collect(),
        )
    };
    if let (Some(v), Some(e)) = (index("validate"), index("echo"))
        && same_generator(v, e)
    {
        ratios.insert("validate_over_echo", per_round(v, e));
    }
    if let (Some(g), Some(e)) = (index("get_profile"), index("echo"))
        && same_generator(g, e)
    {
        ratios.insert("get_profile_over_echo", per_round(g, e));
    }
    if let (Some(c), Some(e)) = (index("ext_authz_check"), index("echo"))
        && same_generator(c, e)
    {
        ratios.insert("ext_authz_check_over_echo", per_round(c, e));
    }
    let rows = prepared
        .iter()
        .zip(samples)
        .zip(rps)
        .zip(peaks)
        .zip(cpu)
        .zip(elapsed)
        .map(|(((((p, recs), rps), peak), cpu), elapsed)| {
            let mut all = Recorder::default();
            for r in recs {
                all.merge(r);
            }
            let w = Window {
                rec: Recorder::default(),
                elapsed,
                peak_rss_mb: peak,
                generator_cpu_pct: median_of(cpu.iter().map(|c| c.0)),
                server_cpu_pct: median_of(cpu.iter().map(|c| c.1)),
            };
            let mut row = p.row(env, all.summarize(elapsed), &w);
            row.notes.insert("rounds".into(), rounds.into());
            row.notes.insert(
                "req_per_s_by_round".into(),
                rps.iter().map(|r| (r * 10.0).round() / 10.0).collect(),
            );
            row
        })
        .collect();
    (rows, ratios)
}

/// The median of the values present (none: `None`).
pub(super) fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().collect();
    (!v.is_empty()).then(|| median(v))
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
