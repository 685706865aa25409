//! SQLite backend (bundled): the embedded default for `serve --dev`.

use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Pool as DeadPool;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection as _, SimpleAsyncConnection as _};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use futures_util::FutureExt as _;

pub(super) type Conn = SyncConnectionWrapper<SqliteConnection>;
pub type Pool = DeadPool<Conn>;

pub(super) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

pub(super) mod schema {
    type IdSql = diesel::sql_types::Text;
    type TimeSql = diesel::sql_types::TimestamptzSqlite;
    include!("schema.rs");
}

// BEGIN IMMEDIATE takes the write lock up front, so two writers queue on
// busy_timeout instead of one failing with SQLITE_BUSY on lock upgrade.
macro_rules! write_tx {
    ($conn:expr, $body:expr) => {
        $conn.immediate_transaction($body).await
    };
}

/// Appends the announcement to `revocation_announcements` (see
/// `crate::announcements`): part of the transaction, so it is there from
/// commit on and gone on rollback. The server polls the table, so that a
/// revocation by `identity admin`, another process on the same file,
/// reaches its memory too.
macro_rules! notify_revoked {
    ($conn:expr, $revoked:expr) => {{
        use crate::sqlite::announced as a;
        diesel::insert_into(a::table)
            .values((
                a::payload.eq($revoked.payload()),
                a::announced_at.eq(Utc::now().timestamp_millis()),
            ))
            .execute($conn)
            .await
            .map(drop)
    }};
}

/// The SQLite-only table of announcements (migrations/sqlite, 000400).
pub(super) mod announced {
    diesel::table! {
        revocation_announcements (id) {
            id -> BigInt,
            payload -> Text,
            announced_at -> BigInt,
        }
    }
    pub(crate) use revocation_announcements::*;
}

/// BEGIN IMMEDIATE already makes writers take turns.
macro_rules! lock_admin_grant {
    ($conn:expr) => {{
        let _ = &$conn;
        diesel::result::QueryResult::Ok(())
    }};
}

/// BEGIN IMMEDIATE already makes writers take turns (SQLite has no row
/// locks).
/// One process writes the file: its own clock is the database's clock.
macro_rules! database_now {
    ($conn:expr, $now:expr) => {
        $now
    };
}

macro_rules! lock_refresh_token {
    ($query:expr) => {
        $query
    };
}

include!("queries.rs");

// The busy timeout first: the statements after it read the file, and a
// connection without one answers "database is locked" at once when another
// is rebuilding the write-ahead log's index.
const PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                       PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

pub(super) fn pool(
    url: &super::SqliteUrl,
    settings: &super::PoolSettings,
) -> Result<Pool, super::StoreError> {
    let mut config = ManagerConfig::<Conn>::default();
    config.custom_setup = Box::new(|url| {
        async move {
            let mut conn = Conn::establish(url).await?;
            conn.batch_execute(PRAGMAS)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<Conn>::new_with_config(url.path(), config);
    super::build_pool(manager, settings)
}

/// Every failure is `StoreError::Unavailable`: the migrations could not
/// run, whatever stopped them.
pub(super) async fn migrate(url: super::SqliteUrl) -> Result<Vec<String>, super::StoreError> {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;
    use diesel_migrations::MigrationHarness;
    let unavailable = |e: &dyn std::fmt::Display| super::StoreError::Unavailable(e.to_string());
    tokio::task::spawn_blocking(move || {
        let path = url.path();
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| super::StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let mut conn = SqliteConnection::establish(path).map_err(|e| unavailable(&e))?;
        conn.batch_execute(PRAGMAS).map_err(|e| unavailable(&e))?;
        conn.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| unavailable(&e))
    })
    .await
    .map_err(|e| unavailable(&e))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatabaseUrl, PoolSettings, Store};
    use identity_core::Id;
    use std::time::Duration;

    /// The first connections to a file whose write-ahead log is gone (the
    /// last connection removed it) race to rebuild its index, and a
    /// connection that has no busy timeout yet answers "database is
    /// locked" instead of waiting: set-up must set the timeout first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_first_connections_to_a_file_wait_for_each_other() {
        for round in 0..20 {
            let dir = std::env::temp_dir().join(format!("identity-sqlite-{}", Id::new()));
            let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.join("w.db").display()))
                .expect("a SQLite URL");
            Store::migrate(&url).await.expect("migrations");
            let DatabaseUrl::Sqlite(file) = &url else {
                unreachable!("parsed from sqlite://")
            };
            let settings = PoolSettings {
                max_size: 4,
                timeout: Duration::from_secs(5),
            };
            let opening: Vec<_> = (0..16)
                .map(|_| {
                    let pool = pool(file, &settings).expect("a pool");
                    tokio::spawn(async move {
                        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                        diesel::insert_into(announced::table)
                            .values((announced::payload.eq("x"), announced::announced_at.eq(0)))
                            .execute(&mut *conn)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            for opened in opening {
                let result = opened.await.expect("the task");
                assert!(result.is_ok(), "round {round}: {result:?}");
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
