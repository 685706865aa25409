//! End-to-end tests: the real `identity` binary, over real sockets, against
//! a real PostgreSQL database (one per test) and a real SQLite file.

mod support;

mod audit_flood;
mod audit_trail;
mod auth_flow;
mod bcrypt;
mod cli;
mod client_crate;
mod crate_walls;
mod dashboards;
mod database_tls;
mod error_reasons;
mod exchange;
mod ext_authz;
mod forgery;
mod fuzz;
mod go_client;
mod grpcurl;
mod hardening;
mod housekeeping;
mod input;
mod outage;
mod pgbouncer;
mod profiles;
mod python_client;
mod redis_tls;
mod refresh_grace;
mod register_cost;
mod revocation;
mod service_clients;
mod sessions;
mod takeover;
mod telemetry;
mod throttle;
mod watch_revocations;
mod well_known;
