//! `make bench`: drives the real `identity` binary (and a bare tonic echo
//! server, the baseline) over loopback sockets and reports throughput,
//! latency percentiles, errors by status and server memory.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod fixtures;
pub mod h2load;
pub mod load;
pub mod options;
pub mod procs;
pub mod provider;
pub mod report;
pub mod scenarios;
pub mod scrape;
pub mod stats;

/// The echo baseline's generated code.
pub mod echo {
    tonic::include_proto!("bench.echo.v1");
}
