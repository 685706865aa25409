//! The identity server's own count of its answers: `GET /metrics` on its
//! admin port (`IDENTITY_METRICS_ADDR`), read before and after a window.
//!
//! h2load counts an HTTP 200 as a success, and a gRPC error is an HTTP 200
//! too (its `grpc-status` travels in the headers or trailers, which h2load
//! never reads). The server's counters by gRPC code are what tell an OK
//! answer from a refusal.

use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One scrape: every sample by its series (`name{labels}`).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    pub series: BTreeMap<String, f64>,
}

/// Reads `/metrics` from `addr` (the admin port speaks HTTP/1.1, one
/// request per connection).
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Scrape> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .context("/metrics did not answer within 5 s")??;
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("/metrics: no HTTP answer");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("/metrics: {}", head.lines().next().unwrap_or_default());
    }
    Ok(Scrape::parse(body))
}

impl Scrape {
    /// Prometheus text: `series value` lines, comments skipped.
    pub fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Scrape { series }
    }

    /// `identity_rpc_requests_total` of `method` (`package.Service/Method`)
    /// by gRPC code name.
    pub fn rpc_by_code(&self, method: &str) -> BTreeMap<String, f64> {
        let prefix = format!("identity_rpc_requests_total{{method=\"{method}\",code=\"");
        self.series
            .iter()
            .filter_map(|(k, v)| {
                let code = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                Some((code.to_owned(), *v))
            })
            .collect()
    }

    /// The sum of every series of the family `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// One series, exactly as written (`name{labels}`).
    pub fn get(&self, series: &str) -> Option<f64> {
        self.series.get(series).copied()
    }
}

/// What the server answered to `method` between two scrapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    pub ok: u64,
    /// Non-OK answers by gRPC code name.
    pub refused: BTreeMap<String, u64>,
    /// Security events counted meanwhile (a ValidateToken that finds a token
    /// invalid answers OK with `active: false`, and counts one).
    pub security_events: u64,
}

impl Answers {
    pub fn between(before: &Scrape, after: &Scrape, method: &str) -> Answers {
        let (b, a) = (before.rpc_by_code(method), after.rpc_by_code(method));
        let delta = |code: &str| {
            let d = a.get(code).copied().unwrap_or(0.0) - b.get(code).copied().unwrap_or(0.0);
            d.max(0.0) as u64
        };
        Answers {
            ok: delta("OK"),
            refused: a
                .keys()
                .filter(|c| *c != "OK")
                .map(|c| (c.clone(), delta(c)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            security_events: (after.sum("identity_security_events_total")
                - before.sum("identity_security_events_total"))
            .max(0.0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# HELP identity_rpc_requests_total RPCs served, by method and gRPC status.
identity_rpc_requests_total{method=\"identity.v1.AuthService/ValidateToken\",code=\"OK\"} 10
identity_security_events_total{event=\"identity.token.invalid\"} 0
identity_db_pool_connections{state=\"idle\"} 3
";
    const AFTER: &str = "\
identity_rpc_requests_total{method=\"identity.v1.AuthService/ValidateToken\",code=\"OK\"} 110
identity_rpc_requests_total{method=\"identity.v1.AuthService/ValidateToken\",code=\"UNAUTHENTICATED\"} 2
identity_rpc_requests_total{method=\"identity.v1.AuthService/Login\",code=\"INTERNAL\"} 7
identity_security_events_total{event=\"identity.token.invalid\"} 1
identity_db_pool_connections{state=\"idle\"} 4
";

    #[test]
    fn answers_between_two_scrapes_by_code_of_one_method() {
        let (b, a) = (Scrape::parse(BEFORE), Scrape::parse(AFTER));
        let answers = Answers::between(&b, &a, "identity.v1.AuthService/ValidateToken");
        assert_eq!(answers.ok, 100);
        assert_eq!(
            answers.refused,
            BTreeMap::from([("UNAUTHENTICATED".to_owned(), 2)])
        );
        assert_eq!(answers.security_events, 1);
        assert_eq!(
            a.get("identity_db_pool_connections{state=\"idle\"}"),
            Some(4.0)
        );
    }
}
