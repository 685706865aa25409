//! `bench`: the load benchmark of `make bench`. Every scenario starts a
//! fresh server (a new PostgreSQL database, a new process) on loopback and
//! drives it over N HTTP/2 connections with M concurrent streams; the echo
//! scenario measures a bare tonic server built in this workspace, the
//! ceiling any unary RPC can reach here. Prints a table with the ratios that
//! matter and writes everything as JSON.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use clap::Parser;
use identity_bench::options::{Args, Env};
use identity_bench::procs::{Machine, check_loopback};
use identity_bench::report::{Report, print_report};
use identity_bench::scenarios;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.client_threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    check_loopback(&args.pg_url)?;
    let started = Instant::now();
    let selected = scenarios::select(&args.scenarios)?;
    let env = Env::new(args)?;
    let machine = Machine::probe();
    eprintln!(
        "bench: {} × {} , {:.1} GiB; window {:?}, warm-up {:?}, {} connections × {} streams",
        machine.cores,
        machine.cpu_model,
        machine.memory_gib,
        env.duration,
        env.warmup,
        env.args.connections,
        env.args.concurrency
    );
    if let Some(length) = env.args.soak {
        return scenarios::soak::run_soak(&env, length).await;
    }
    if let Some(n) = env.args.scale {
        return scenarios::scale::run_scale(&env, n).await;
    }
    let results = scenarios::run(&env, &selected, machine.cores).await?;
    let report = Report::new(machine, &env, results, started);
    print_report(&report);
    if env.identity.components().any(|c| c.as_os_str() == "debug") {
        println!("(debug binaries: the figures above say nothing about performance)");
    }
    report.write(&env.args.out)?;
    eprintln!("bench: wrote {}", env.args.out.display());
    Ok(())
}
