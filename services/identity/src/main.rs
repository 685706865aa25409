#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use identity::cli::Command;
use identity::config::{Config, parse_cli};
use identity::{commands, server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("identity: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let args = *args;
                let config = match Config::load(args.settings, args.dev) {
                    Ok(config) => config,
                    Err(e) => {
                        eprintln!("identity: refusing to start: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
                let otlp_tls = match identity::telemetry::otlp_tls() {
                    Ok(tls) => tls,
                    Err(e) => {
                        eprintln!("identity: refusing to start: {e}");
                        return Ok(ExitCode::from(2));
                    }
                };
                let telemetry =
                    identity::telemetry::init(config.log_format, &config.log_filter, otlp_tls);
                let result = server::run(config, server::shutdown_signal()).await;
                // Flush queued spans before exit (bounded).
                telemetry.shutdown().await;
                result.map(|()| ExitCode::SUCCESS)
            }
            Command::Migrate(args) => commands::migrate(&args.database_url)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Keygen(args) => commands::keygen(args).map(|()| ExitCode::SUCCESS),
            Command::Healthcheck(args) => commands::healthcheck(args).await.map(|serving| {
                if serving {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }),
            Command::Audit(args) => commands::audit(args.command)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Admin(args) => commands::admin(args).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("identity: {e:#}");
            ExitCode::FAILURE
        }
    }
}
