//! PostgreSQL backend: schema, pool and migrations (diesel-async over
//! tokio-postgres; no libpq).

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::Pool as DeadPool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub(super) type Conn = AsyncPgConnection;
pub type Pool = DeadPool<Conn>;

pub(super) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

pub(super) mod schema {
    type IdSql = diesel::sql_types::Uuid;
    type TimeSql = diesel::sql_types::Timestamptz;
    include!("schema.rs");
}

macro_rules! write_tx {
    ($conn:expr, $body:expr) => {
        diesel_async::AsyncConnection::transaction($conn, $body).await
    };
}

/// Announces a revocation to every replica (see `super::notify`): part of
/// the transaction, so it is delivered at commit and dropped on rollback.
macro_rules! notify_revoked {
    ($conn:expr, $revoked:expr) => {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(super::notify::CHANNEL)
            .bind::<diesel::sql_types::Text, _>($revoked.payload())
            .execute($conn)
            .await
            .map(drop)
    };
}

/// Serialises the bootstrap-admin decision: under READ COMMITTED two
/// registrations could each see no admin and both take the role.
macro_rules! lock_admin_grant {
    ($conn:expr) => {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7242020)")
            .execute($conn)
            .await
            .map(drop)
    };
}

/// The database's clock, as it reads now (not the transaction's start:
/// a transaction that waited for a row lock must not see the past).
/// Replicas' clocks drift apart; times compared across replicas, such as
/// a refresh token's spend and its retry, are read from this one clock.
macro_rules! database_now {
    ($conn:expr, $now:expr) => {{
        // The caller's clock serves SQLite (one process); not read here.
        let _ = $now;
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
            "clock_timestamp()",
        ))
        .get_result::<DateTime<Utc>>($conn)
        .await?
    }};
}

/// Locks the refresh-token rows a query reads until commit: concurrent
/// Refreshes of one token take turns (under READ COMMITTED each statement
/// after the lock sees what the previous holder committed).
macro_rules! lock_refresh_token {
    ($query:expr) => {
        $query.for_update()
    };
}

include!("queries.rs");

pub(super) fn pool(
    url: &super::PgUrl,
    settings: &super::PoolSettings,
) -> Result<Pool, super::StoreError> {
    use futures_util::FutureExt as _;
    let mut config = ManagerConfig::<Conn>::default();
    // Every connection is opened from the parsed URL; the manager's string
    // is not read again.
    let parsed = url.clone();
    config.custom_setup = Box::new(move |_| {
        let url = parsed.clone();
        async move { super::pg_tls::establish(&url).await }.boxed()
    });
    let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url.connect_str(), config);
    super::build_pool(manager, settings)
}

/// Every failure is `StoreError::Unavailable`: the migrations could not
/// run, whatever stopped them.
pub(super) async fn migrate(url: super::PgUrl) -> Result<Vec<String>, super::StoreError> {
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    use diesel_migrations::MigrationHarness;
    let unavailable = |e: &dyn std::fmt::Display| super::StoreError::Unavailable(e.to_string());
    let conn = super::pg_tls::establish(&url)
        .await
        .map_err(|e| unavailable(&e))?;
    // The migration harness is synchronous; run it on a blocking thread
    // through the async connection (no libpq involved).
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<Conn>::from(conn);
        // One migrator at a time across replicas and jobs.
        diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_lock(7242019)"),
            &mut conn,
        )
        .map_err(|e| unavailable(&e))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| unavailable(&e));
        let _ = diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_unlock(7242019)"),
            &mut conn,
        );
        applied
    })
    .await
    .map_err(|e| unavailable(&e))?
}
