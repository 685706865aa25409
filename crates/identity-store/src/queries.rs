// Backend-neutral queries, compiled once per backend.
//
// This file is `include!`d by `postgres.rs` and `sqlite.rs`, each of which
// defines `schema` (its own `table!`s), `Conn` (its connection type) and the
// `write_tx!` macro (a plain transaction on PostgreSQL, `BEGIN IMMEDIATE` on
// SQLite so that concurrent writers wait instead of failing). Diesel's query
// builder is typed by backend, so sharing the text is how one set of queries
// serves both without a generic-bound maze. Every value reaches SQL as a bind
// parameter; nothing here formats SQL from input.

use identity_core::Revoked;
use identity_core::events::{EventName, Field, SecurityEvent};
use super::types::{
    DbId,     join_roles, AuditEvent, AuditRow, CredentialRow, Id, NewAccount, NewSession, Profile,
    ProfileRow, ServiceClient, ServiceClientChange, ServiceClientRow, SessionDetails, SessionRow, SpendOutcome, Session,
    VerifiedLogin,
};
use identity_core::roles::ADMIN_ROLE;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::RunQueryDsl;

const PROFILE_COLUMNS: (
    schema::profiles::id,
    schema::profiles::auth_provider,
    schema::profiles::auth_id,
    schema::profiles::email,
    schema::profiles::display_name,
    schema::profiles::avatar_url,
    schema::profiles::locale,
    schema::profiles::roles,
    schema::profiles::revision,
    schema::profiles::created_at,
    schema::profiles::updated_at,
    schema::profiles::provider_verified_email,
) = (
    schema::profiles::id,
    schema::profiles::auth_provider,
    schema::profiles::auth_id,
    schema::profiles::email,
    schema::profiles::display_name,
    schema::profiles::avatar_url,
    schema::profiles::locale,
    schema::profiles::roles,
    schema::profiles::revision,
    schema::profiles::created_at,
    schema::profiles::updated_at,
    schema::profiles::provider_verified_email,
);

const SESSION_COLUMNS: (
    schema::sessions::id,
    schema::sessions::profile_id,
    schema::sessions::created_at,
    schema::sessions::expires_at,
    schema::sessions::revoked_at,
) = (
    schema::sessions::id,
    schema::sessions::profile_id,
    schema::sessions::created_at,
    schema::sessions::expires_at,
    schema::sessions::revoked_at,
);

pub(super) async fn ping(conn: &mut Conn) -> QueryResult<()> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
        .get_result::<i32>(conn)
        .await
        .map(drop)
}

async fn insert_audit(conn: &mut Conn, event: &AuditEvent) -> QueryResult<()> {
    use schema::audit_events as a;
    diesel::insert_into(a::table)
        .values((
            a::id.eq(DbId(event.id)),
            a::occurred_at.eq(event.occurred_at),
            a::event_name.eq(event.event_name),
            a::profile_id.eq(event.profile_id.map(DbId)),
            a::session_id.eq(event.session_id.map(DbId)),
            a::client_addr.eq(event.client_addr.as_deref()),
            a::detail.eq(event.detail.to_string()),
        ))
        .execute(conn)
        .await
        .map(drop)
}

pub(super) async fn record_audit(conn: &mut Conn, event: &AuditEvent) -> QueryResult<()> {
    insert_audit(conn, event).await
}

pub(super) async fn recent_audit(
    conn: &mut Conn,
    since: DateTime<Utc>,
    profile: Option<Id>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    use schema::audit_events as a;
    let mut query = a::table
        .select((
            a::id,
            a::occurred_at,
            a::event_name,
            a::profile_id,
            a::session_id,
            a::client_addr,
            a::detail,
        ))
        .filter(a::occurred_at.ge(since))
        .order((a::occurred_at.asc(), a::id.asc()))
        .limit(limit)
        .into_boxed();
    if let Some(profile) = profile {
        query = query.filter(a::profile_id.eq(DbId(profile)));
    }
    query.load(conn).await
}

async fn insert_profile(conn: &mut Conn, p: &Profile) -> QueryResult<()> {
    use schema::profiles as t;
    diesel::insert_into(t::table)
        .values((
            t::id.eq(DbId(p.id)),
            t::auth_provider.eq(&p.auth_provider),
            t::auth_id.eq(&p.auth_id),
            t::email.eq(p.email.as_deref()),
            t::display_name.eq(&p.display_name),
            t::avatar_url.eq(&p.avatar_url),
            t::locale.eq(&p.locale),
            t::roles.eq(join_roles(&p.roles)),
            t::revision.eq(p.revision),
            t::created_at.eq(p.created_at),
            t::updated_at.eq(p.updated_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

async fn insert_session(conn: &mut Conn, s: &NewSession) -> QueryResult<()> {
    use schema::{refresh_tokens as r, sessions as t};
    diesel::insert_into(t::table)
        .values((
            t::id.eq(DbId(s.id)),
            t::profile_id.eq(DbId(s.profile_id)),
            t::created_at.eq(s.created_at),
            t::expires_at.eq(s.expires_at),
            t::client_addr.eq(s.origin.client_addr.as_deref()),
            t::user_agent.eq(s.origin.user_agent.as_deref()),
        ))
        .execute(conn)
        .await?;
    diesel::insert_into(r::table)
        .values((
            r::token_hash.eq(&s.refresh_token_hash),
            r::session_id.eq(DbId(s.id)),
            r::created_at.eq(s.created_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Whether any profile holds `role` (roles are stored space-separated).
async fn role_held(conn: &mut Conn, role: &str) -> QueryResult<bool> {
    use schema::profiles as p;
    let (first, last, inner) = (format!("{role} %"), format!("% {role}"), format!("% {role} %"));
    diesel::select(diesel::dsl::exists(
        p::table.filter(
            p::roles
                .eq(role)
                .or(p::roles.like(first))
                .or(p::roles.like(last))
                .or(p::roles.like(inner)),
        ),
    ))
    .get_result(conn)
    .await
}

/// Creates profile, credential and first session; returns whether the
/// bootstrap admin role was granted. It is granted only while nobody holds
/// it, decided under a lock inside this transaction: a listed email that is
/// free again later (the operator moved or left) is an ordinary account.
pub(super) async fn create_local_account(
    conn: &mut Conn,
    account: &NewAccount,
    audit: &[AuditEvent],
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::credentials as c;
        let mut granted = false;
        if account.bootstrap_admin.is_some() {
            lock_admin_grant!(conn)?;
            granted = !role_held(conn, ADMIN_ROLE).await?;
        }
        if granted {
            let mut profile = account.profile.clone();
            profile.roles.push(ADMIN_ROLE.to_owned());
            insert_profile(conn, &profile).await?;
        } else {
            insert_profile(conn, &account.profile).await?;
        }
        diesel::insert_into(c::table)
            .values((
                c::profile_id.eq(DbId(account.profile.id)),
                c::email.eq(&account.email),
                c::password_hash.eq(&account.password_hash),
                c::created_at.eq(account.profile.created_at),
                c::updated_at.eq(account.profile.created_at),
            ))
            .execute(conn)
            .await?;
        insert_session(conn, &account.session).await?;
        for event in audit {
            insert_audit(conn, event).await?;
        }
        if let Some(event) = account.bootstrap_admin.as_ref().filter(|_| granted) {
            insert_audit(conn, event).await?;
        }
        Ok(granted)
    })
}

/// Whether `verified` is still the credential of `profile`. The no-op
/// update takes the credential's row lock until commit, so a concurrent
/// ChangePassword or ChangeEmail either committed first (and this is false)
/// or waits for this transaction and then revokes what it started.
async fn still_verified(conn: &mut Conn, profile: Id, verified: &VerifiedLogin<'_>) -> QueryResult<bool> {
    use schema::credentials as c;
    diesel::update(
        c::table
            .filter(c::profile_id.eq(DbId(profile)))
            .filter(c::email.eq(verified.email))
            .filter(c::password_hash.eq(verified.password_hash)),
    )
    .set(c::updated_at.eq(c::updated_at))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

/// Starts a session; for a password login (`verified`) only while that
/// login is still the credential (see `still_verified`). Returns whether it
/// did.
pub(super) async fn start_session(
    conn: &mut Conn,
    session: &NewSession,
    verified: Option<&VerifiedLogin<'_>>,
    audit: &AuditEvent,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        if let Some(verified) = verified
            && !still_verified(conn, session.profile_id, verified).await?
        {
            return Ok(false);
        }
        insert_session(conn, session).await?;
        insert_audit(conn, audit).await?;
        Ok(true)
    })
}

pub(super) async fn find_profile(conn: &mut Conn, id: Id) -> QueryResult<Option<Profile>> {
    schema::profiles::table
        .select(PROFILE_COLUMNS)
        .filter(schema::profiles::id.eq(DbId(id)))
        .first::<ProfileRow>(conn)
        .await
        .optional()
        .map(|row| row.map(Profile::from))
}

pub(super) async fn find_credential(
    conn: &mut Conn,
    email: &str,
) -> QueryResult<Option<CredentialRow>> {
    use schema::{credentials as c, profiles as p};
    c::table
        .inner_join(p::table)
        .filter(c::email.eq(email))
        .select((PROFILE_COLUMNS, c::password_hash))
        .first::<(ProfileRow, String)>(conn)
        .await
        .optional()
        .map(|row| {
            row.map(|(profile, password_hash)| CredentialRow {
                profile: profile.into(),
                password_hash,
            })
        })
}

pub(super) async fn password_hash_of(conn: &mut Conn, profile: Id) -> QueryResult<Option<String>> {
    use schema::credentials as c;
    c::table
        .filter(c::profile_id.eq(DbId(profile)))
        .select(c::password_hash)
        .first::<String>(conn)
        .await
        .optional()
}

/// Replaces a hash only if it is still the one that was verified, so a
/// rehash racing a password change can never undo the change.
pub(super) async fn upgrade_password_hash(
    conn: &mut Conn,
    profile: Id,
    old_hash: &str,
    new_hash: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    use schema::credentials as c;
    diesel::update(
        c::table
            .filter(c::profile_id.eq(DbId(profile)))
            .filter(c::password_hash.eq(old_hash)),
    )
    .set((c::password_hash.eq(new_hash), c::updated_at.eq(now)))
    .execute(conn)
    .await
    .map(|n| n == 1)
}

pub(super) async fn find_session(conn: &mut Conn, id: Id) -> QueryResult<Option<Session>> {
    schema::sessions::table
        .select(SESSION_COLUMNS)
        .filter(schema::sessions::id.eq(DbId(id)))
        .first::<SessionRow>(conn)
        .await
        .optional()
        .map(|row| row.map(Session::from))
}

async fn revoke_one(conn: &mut Conn, id: Id, reason: &str, now: DateTime<Utc>) -> QueryResult<bool> {
    use schema::sessions as s;
    let revoked = diesel::update(s::table.filter(s::id.eq(DbId(id))).filter(s::revoked_at.is_null()))
        .set((s::revoked_at.eq(now), s::revoke_reason.eq(reason)))
        .execute(conn)
        .await?
        == 1;
    if revoked {
        notify_revoked!(conn, Revoked::Session(id))?;
    }
    Ok(revoked)
}

pub(super) async fn revoke_session(
    conn: &mut Conn,
    id: Id,
    reason: &str,
    now: DateTime<Utc>,
    audit: &AuditEvent,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        let revoked = revoke_one(conn, id, reason, now).await?;
        if revoked {
            insert_audit(conn, audit).await?;
        }
        Ok(revoked)
    })
}

/// Spends a refresh token and stores its successor, or — if it was spent
/// before — revokes its whole session (the token was stolen or replayed).
pub(super) async fn spend_refresh_token(
    conn: &mut Conn,
    presented_hash: &str,
    next_hash: &str,
    now: DateTime<Utc>,
    client_addr: Option<&str>,
) -> QueryResult<SpendOutcome> {
    write_tx!(conn, async |conn| {
        use schema::{profiles as p, refresh_tokens as r, sessions as s};
        let found = r::table
            .inner_join(s::table.inner_join(p::table))
            .filter(r::token_hash.eq(presented_hash))
            .select((r::spent_at, SESSION_COLUMNS, PROFILE_COLUMNS))
            .first::<(Option<DateTime<Utc>>, SessionRow, ProfileRow)>(conn)
            .await
            .optional()?;
        let Some((spent_at, session, profile)) = found else {
            return Ok(SpendOutcome::Unknown);
        };
        let session = Session::from(session);
        if !session.is_active(now) {
            return Ok(SpendOutcome::SessionEnded);
        }
        // The conditional update is the arbiter between concurrent callers
        // holding the same token: exactly one sees it unspent.
        let won = spent_at.is_none()
            && diesel::update(
                r::table
                    .filter(r::token_hash.eq(presented_hash))
                    .filter(r::spent_at.is_null()),
            )
            .set(r::spent_at.eq(now))
            .execute(conn)
            .await?
                == 1;
        if !won {
            revoke_one(conn, session.id, "refresh_token_reused", now).await?;
            let event = SecurityEvent::new(EventName::RefreshReused)
                .profile(session.profile_id)
                .session(session.id)
                .client(client_addr);
            insert_audit(conn, &event.audit_row()).await?;
            return Ok(SpendOutcome::Reused {
                session_id: session.id,
                event,
            });
        }
        diesel::insert_into(r::table)
            .values((
                r::token_hash.eq(next_hash),
                r::session_id.eq(DbId(session.id)),
                r::created_at.eq(now),
            ))
            .execute(conn)
            .await?;
        // Last use moves here and not on validation, the hot path (see the
        // migration 2026-12-03-000200_session_details).
        diesel::update(s::table.filter(s::id.eq(DbId(session.id))))
            .set(s::last_used_at.eq(now))
            .execute(conn)
            .await?;
        Ok(SpendOutcome::Rotated {
            session,
            profile: Box::new(profile.into()),
        })
    })
}

/// Of `ids`, those whose session is still live at `now` (reconciliation of
/// the in-memory revocation state; callers keep `ids` short).
pub(super) async fn live_sessions_among(
    conn: &mut Conn,
    ids: &[Id],
    now: DateTime<Utc>,
) -> QueryResult<Vec<Id>> {
    use schema::sessions as s;
    s::table
        .filter(s::id.eq_any(ids.iter().copied().map(DbId).collect::<Vec<_>>()))
        .filter(s::revoked_at.is_null())
        .filter(s::expires_at.gt(now))
        .select(s::id)
        .load::<DbId>(conn)
        .await
        .map(|ids| ids.into_iter().map(Id::from).collect())
}

// ---------------------------------------------------------------------------
// Sessions API (ListSessions, RevokeSession, RevokeAllSessions).

/// One page of `profile`'s live sessions, newest first (ids are UUIDv7),
/// strictly before `before`: keyset pagination like `list_profiles`.
pub(super) async fn list_sessions(
    conn: &mut Conn,
    profile: Id,
    before: Option<Id>,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<SessionDetails>> {
    use schema::sessions as s;
    let mut query = s::table
        .select((
            s::id,
            s::profile_id,
            s::created_at,
            s::expires_at,
            s::client_addr,
            s::user_agent,
            s::last_used_at,
        ))
        .filter(s::profile_id.eq(DbId(profile)))
        .filter(s::revoked_at.is_null())
        .filter(s::expires_at.gt(now))
        .order(s::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(s::id.lt(DbId(before)));
    }
    query.load(conn).await
}

/// Revokes every live session of `profile` but `except`, announces it and
/// writes `audit` (with the count) in one transaction; returns the count.
/// Nothing is written when there was nothing to revoke.
pub(super) async fn revoke_all_sessions(
    conn: &mut Conn,
    profile: Id,
    except: Option<Id>,
    reason: &str,
    now: DateTime<Utc>,
    audit: &AuditEvent,
) -> QueryResult<usize> {
    write_tx!(conn, async |conn| {
        use schema::sessions as s;
        let mut query = diesel::update(s::table)
            .filter(s::profile_id.eq(DbId(profile)))
            .filter(s::revoked_at.is_null())
            .into_boxed();
        if let Some(keep) = except {
            query = query.filter(s::id.ne(DbId(keep)));
        }
        let revoked = query
            .set((s::revoked_at.eq(now), s::revoke_reason.eq(reason)))
            .execute(conn)
            .await?;
        if revoked > 0 {
            notify_revoked!(conn, Revoked::Profile { profile, except })?;
            insert_audit(conn, &audit.clone().detail(Field::Count.key(), revoked)).await?;
        }
        Ok(revoked)
    })
}

/// Looks a refresh token up without spending it (for Logout).
pub(super) async fn session_of_refresh_token(
    conn: &mut Conn,
    token_hash: &str,
) -> QueryResult<Option<Session>> {
    use schema::{refresh_tokens as r, sessions as s};
    r::table
        .inner_join(s::table)
        .filter(r::token_hash.eq(token_hash))
        .select(SESSION_COLUMNS)
        .first::<SessionRow>(conn)
        .await
        .optional()
        .map(|row| row.map(Session::from))
}

/// Sets a new password hash and revokes every session of the user but
/// `keep`, and every device token of the user, in one transaction.
pub(super) async fn change_password(
    conn: &mut Conn,
    profile: Id,
    expected_old_hash: &str,
    new_hash: &str,
    keep: Id,
    now: DateTime<Utc>,
    audit: &AuditEvent,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::{credentials as c, sessions as s};
        let changed = diesel::update(
            c::table
                .filter(c::profile_id.eq(DbId(profile)))
                .filter(c::password_hash.eq(expected_old_hash)),
        )
        .set((c::password_hash.eq(new_hash), c::updated_at.eq(now)))
        .execute(conn)
        .await?
            == 1;
        if !changed {
            return Ok(false);
        }
        let revoked = diesel::update(
            s::table
                .filter(s::profile_id.eq(DbId(profile)))
                .filter(s::id.ne(DbId(keep)))
                .filter(s::revoked_at.is_null()),
        )
        .set((s::revoked_at.eq(now), s::revoke_reason.eq("password_changed")))
        .execute(conn)
        .await?;
        if revoked > 0 {
            notify_revoked!(conn, Revoked::Profile { profile, except: Some(keep) })?;
        }
        // Devices known under the old password are strangers again.
        diesel::delete(schema::device_tokens::table.filter(schema::device_tokens::profile_id.eq(DbId(profile))))
            .execute(conn)
            .await?;
        insert_audit(conn, audit).await?;
        Ok(true)
    })
}

pub(super) async fn change_email(
    conn: &mut Conn,
    profile: Id,
    verified_hash: &str,
    new_email: &str,
    keep: Id,
    now: DateTime<Utc>,
    audit: &AuditEvent,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::{credentials as c, profiles as p, sessions as s};
        let renamed = diesel::update(
            c::table
                .filter(c::profile_id.eq(DbId(profile)))
                .filter(c::password_hash.eq(verified_hash)),
        )
        .set((c::email.eq(new_email), c::updated_at.eq(now)))
        .execute(conn)
        .await?
            == 1;
        if !renamed {
            return Ok(false);
        }
        diesel::update(p::table.filter(p::id.eq(DbId(profile))))
            .set((
                p::email.eq(new_email),
                p::revision.eq(p::revision + 1),
                p::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        notify_revoked!(conn, Revoked::ProfileChanged(profile))?;
        let revoked = diesel::update(
            s::table
                .filter(s::profile_id.eq(DbId(profile)))
                .filter(s::id.ne(DbId(keep)))
                .filter(s::revoked_at.is_null()),
        )
        .set((s::revoked_at.eq(now), s::revoke_reason.eq("email_changed")))
        .execute(conn)
        .await?;
        if revoked > 0 {
            notify_revoked!(conn, Revoked::Profile { profile, except: Some(keep) })?;
        }
        insert_audit(conn, audit).await?;
        Ok(true)
    })
}

pub(super) async fn create_profile(conn: &mut Conn, profile: &Profile, audit: &AuditEvent) -> QueryResult<()> {
    write_tx!(conn, async |conn| {
        insert_profile(conn, profile).await?;
        insert_audit(conn, audit).await
    })
}

pub(super) async fn find_profile_by_auth(
    conn: &mut Conn,
    provider: &str,
    auth_id: &str,
) -> QueryResult<Option<Profile>> {
    use schema::profiles as p;
    p::table
        .select(PROFILE_COLUMNS)
        .filter(p::auth_provider.eq(provider))
        .filter(p::auth_id.eq(auth_id))
        .first::<ProfileRow>(conn)
        .await
        .optional()
        .map(|row| row.map(Profile::from))
}

pub(super) async fn find_profile_by_login_email(conn: &mut Conn, email: &str) -> QueryResult<Option<Profile>> {
    Ok(find_credential(conn, email).await?.map(|c| c.profile))
}

/// Writes `next` over the stored profile if its revision is still
/// `expected` (optimistic concurrency); a changed email also renames the
/// local login. `next.revision` must be `expected + 1`.
pub(super) async fn update_profile(
    conn: &mut Conn,
    next: &Profile,
    expected: i64,
    audit: &[AuditEvent],
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::{credentials as c, profiles as p};
        let updated = diesel::update(p::table.filter(p::id.eq(DbId(next.id))).filter(p::revision.eq(expected)))
            .set((
                p::email.eq(next.email.as_deref()),
                p::display_name.eq(&next.display_name),
                p::avatar_url.eq(&next.avatar_url),
                p::locale.eq(&next.locale),
                p::roles.eq(join_roles(&next.roles)),
                p::revision.eq(next.revision),
                p::updated_at.eq(next.updated_at),
            ))
            .execute(conn)
            .await?;
        if updated != 1 {
            return Ok(false);
        }
        notify_revoked!(conn, Revoked::ProfileChanged(next.id))?;
        if let Some(email) = &next.email {
            diesel::update(c::table.filter(c::profile_id.eq(DbId(next.id))).filter(c::email.ne(email)))
                .set((c::email.eq(email), c::updated_at.eq(next.updated_at)))
                .execute(conn)
                .await?;
        }
        for event in audit {
            insert_audit(conn, event).await?;
        }
        Ok(true)
    })
}

/// Revokes every session of the profile, then deletes it (its credential,
/// sessions and refresh tokens go with it), in one transaction.
pub(super) async fn delete_profile(
    conn: &mut Conn,
    id: Id,
    expected: Option<i64>,
    now: DateTime<Utc>,
    audit: &AuditEvent,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::{profiles as p, sessions as s};
        let revoked = diesel::update(s::table.filter(s::profile_id.eq(DbId(id))).filter(s::revoked_at.is_null()))
            .set((s::revoked_at.eq(now), s::revoke_reason.eq("profile_deleted")))
            .execute(conn)
            .await?;
        if revoked > 0 {
            notify_revoked!(conn, Revoked::Profile { profile: id, except: None })?;
        }
        let deleted = match expected {
            Some(revision) => {
                diesel::delete(p::table.filter(p::id.eq(DbId(id))).filter(p::revision.eq(revision)))
                    .execute(conn)
                    .await?
            }
            None => diesel::delete(p::table.filter(p::id.eq(DbId(id)))).execute(conn).await?,
        };
        if deleted != 1 {
            // Roll the revocations back with the failed delete.
            return Err(diesel::result::Error::RollbackTransaction);
        }
        notify_revoked!(conn, Revoked::ProfileChanged(id))?;
        insert_audit(conn, audit).await?;
        Ok(true)
    })
    .or_else(|e| match e {
        diesel::result::Error::RollbackTransaction => Ok(false),
        other => Err(other),
    })
}

/// One page in id order, strictly after `after`: keyset pagination, so
/// concurrent inserts never make a walk skip or repeat an existing row.
pub(super) async fn list_profiles(
    conn: &mut Conn,
    after: Option<Id>,
    provider: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Profile>> {
    use schema::profiles as p;
    let mut query = p::table.select(PROFILE_COLUMNS).order(p::id.asc()).limit(limit).into_boxed();
    if let Some(after) = after {
        query = query.filter(p::id.gt(DbId(after)));
    }
    if let Some(provider) = provider {
        query = query.filter(p::auth_provider.eq(provider));
    }
    query
        .load::<ProfileRow>(conn)
        .await
        .map(|rows| rows.into_iter().map(Profile::from).collect())
}

// ---------------------------------------------------------------------------
// External provider (ExchangeToken): profiles provisioned by (provider,
// auth_id), and their email/display name kept in step with the provider.

/// Creates the profile of an external account unless its (auth_provider,
/// auth_id) already has one, and returns the stored profile and whether this
/// call created it. The unique constraint arbitrates between concurrent
/// first exchanges: exactly one insert wins, the others read the winner's
/// row. The audit row is written only by the winner, in its transaction.
pub(super) async fn provision_profile(
    conn: &mut Conn,
    candidate: &Profile,
    audit: &AuditEvent,
) -> QueryResult<(Profile, bool)> {
    write_tx!(conn, async |conn| {
        use schema::profiles as t;
        let inserted = diesel::insert_into(t::table)
            .values((
                t::id.eq(DbId(candidate.id)),
                t::auth_provider.eq(&candidate.auth_provider),
                t::auth_id.eq(&candidate.auth_id),
                t::email.eq(candidate.email.as_deref()),
                t::display_name.eq(&candidate.display_name),
                t::avatar_url.eq(&candidate.avatar_url),
                t::locale.eq(&candidate.locale),
                t::roles.eq(join_roles(&candidate.roles)),
                t::revision.eq(candidate.revision),
                t::created_at.eq(candidate.created_at),
                t::updated_at.eq(candidate.updated_at),
                t::provider_synced_revision.eq(Some(candidate.revision)),
                t::provider_verified_email
                    .eq(candidate.email.as_deref().filter(|_| candidate.email_verified)),
            ))
            .on_conflict((t::auth_provider, t::auth_id))
            .do_nothing()
            .execute(conn)
            .await?
            == 1;
        if inserted {
            insert_audit(conn, audit).await?;
        }
        let profile = find_profile_by_auth(conn, &candidate.auth_provider, &candidate.auth_id)
            .await?
            .ok_or(diesel::result::Error::NotFound)?;
        Ok((profile, inserted))
    })
}

/// Writes the provider's email and display name over a profile that nobody
/// has changed here since the provider last wrote it (its revision is still
/// the one the sync recorded; 1 when none was recorded). Returns the new
/// profile, or `None` when the profile was edited here, changed meanwhile
/// or is gone: then the stored values win.
#[allow(clippy::too_many_arguments)]
pub(super) async fn sync_provider_fields(
    conn: &mut Conn,
    id: Id,
    expected_revision: i64,
    email: Option<&str>,
    email_verified: bool,
    display_name: &str,
    now: DateTime<Utc>,
    audit: &AuditEvent,
) -> QueryResult<Option<Profile>> {
    write_tx!(conn, async |conn| {
        use schema::profiles as p;
        let synced = p::table
            .filter(p::id.eq(DbId(id)))
            .select(p::provider_synced_revision)
            .first::<Option<i64>>(conn)
            .await
            .optional()?;
        let Some(synced) = synced else {
            return Ok(None);
        };
        if synced.unwrap_or(1) != expected_revision {
            return Ok(None);
        }
        let next = expected_revision + 1;
        let updated = diesel::update(p::table.filter(p::id.eq(DbId(id))).filter(p::revision.eq(expected_revision)))
            .set((
                p::email.eq(email),
                p::provider_verified_email.eq(email.filter(|_| email_verified)),
                p::display_name.eq(display_name),
                p::revision.eq(next),
                p::provider_synced_revision.eq(Some(next)),
                p::updated_at.eq(now),
            ))
            .execute(conn)
            .await?;
        if updated != 1 {
            return Ok(None);
        }
        notify_revoked!(conn, Revoked::ProfileChanged(id))?;
        insert_audit(conn, audit).await?;
        find_profile(conn, id).await
    })
}

pub(super) async fn delete_audit_before(conn: &mut Conn, cutoff: DateTime<Utc>) -> QueryResult<usize> {
    use schema::audit_events as a;
    diesel::delete(a::table.filter(a::occurred_at.lt(cutoff))).execute(conn).await
}

// ---------------------------------------------------------------------------
// Known devices (Login's device tokens), stored only as SHA-256 hashes.

/// Whether `token_hash` is a device token of the local account `email`.
pub(super) async fn is_device_of(conn: &mut Conn, token_hash: &str, email: &str) -> QueryResult<bool> {
    use schema::{credentials as c, device_tokens as d};
    d::table
        .inner_join(c::table)
        .filter(d::token_hash.eq(token_hash))
        .filter(c::email.eq(email))
        .select(d::token_hash)
        .first::<String>(conn)
        .await
        .optional()
        .map(|found| found.is_some())
}

/// Stores a new device token and forgets the profile's least recently used
/// ones beyond `keep`, so logins without a token cannot grow the table
/// without bound. (Sorted here, not in SQL: SQLite holds times as text.)
pub(super) async fn add_device_token(
    conn: &mut Conn,
    token_hash: &str,
    profile: Id,
    verified: &VerifiedLogin<'_>,
    now: DateTime<Utc>,
    keep: usize,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::device_tokens as d;
        // A password change that committed since the login was verified
        // has revoked the profile's device tokens: this one must not follow.
        if !still_verified(conn, profile, verified).await? {
            return Ok(false);
        }
        diesel::insert_into(d::table)
            .values((
                d::token_hash.eq(token_hash),
                d::profile_id.eq(DbId(profile)),
                d::created_at.eq(now),
                d::last_used_at.eq(now),
            ))
            .execute(conn)
            .await?;
        let mut held = d::table
            .filter(d::profile_id.eq(DbId(profile)))
            .select((d::token_hash, d::last_used_at))
            .load::<(String, DateTime<Utc>)>(conn)
            .await?;
        if held.len() > keep {
            // Newest first; the token just added wins a tie.
            held.sort_by_key(|(hash, used)| (std::cmp::Reverse(*used), hash != token_hash));
            let stale: Vec<String> = held.split_off(keep).into_iter().map(|(hash, _)| hash).collect();
            diesel::delete(d::table.filter(d::token_hash.eq_any(&stale)))
                .execute(conn)
                .await?;
        }
        Ok(true)
    })
}

/// Marks a device token used; false when it is gone (revoked meanwhile):
/// an update, never an upsert, so a revoked token cannot come back.
pub(super) async fn touch_device_token(conn: &mut Conn, token_hash: &str, now: DateTime<Utc>) -> QueryResult<bool> {
    use schema::device_tokens as d;
    diesel::update(d::table.filter(d::token_hash.eq(token_hash)))
        .set(d::last_used_at.eq(now))
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// Deletes up to `limit` sessions that ended (expired or revoked) before
/// `ended_before`, with their refresh tokens, in one transaction; returns
/// (sessions, refresh tokens) deleted. A live session's spent tokens are
/// never touched: re-use detection needs them for as long as it lives.
pub(super) async fn purge_ended_sessions(
    conn: &mut Conn,
    ended_before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<(usize, usize)> {
    write_tx!(conn, async |conn| {
        use schema::{refresh_tokens as r, sessions as s};
        let ids: Vec<DbId> = s::table
            .filter(s::expires_at.lt(ended_before).or(s::revoked_at.lt(ended_before)))
            .select(s::id)
            .limit(limit)
            .load(conn)
            .await?;
        if ids.is_empty() {
            return Ok((0, 0));
        }
        let tokens = diesel::delete(r::table.filter(r::session_id.eq_any(&ids))).execute(conn).await?;
        let sessions = diesel::delete(s::table.filter(s::id.eq_any(&ids))).execute(conn).await?;
        Ok((sessions, tokens))
    })
}

// ---------------------------------------------------------------------------
// Provider tokens spent by ExchangeToken (once each).

/// Forgets up to 100 spent provider tokens that expired before `now`
/// (seconds since the epoch): each exchange adds one row and removes up to
/// 100 dead ones, so the table stays about the size of the live tokens.
pub(super) async fn purge_exchanged_tokens(conn: &mut Conn, now: i64) -> QueryResult<usize> {
    use schema::exchanged_provider_tokens as x;
    let dead = x::table
        .filter(x::expires_at.lt(now))
        .select(x::token_key)
        .limit(100)
        .load::<String>(conn)
        .await?;
    if dead.is_empty() {
        return Ok(0);
    }
    diesel::delete(x::table.filter(x::token_key.eq_any(&dead)).filter(x::expires_at.lt(now)))
        .execute(conn)
        .await
}

/// Records the provider token `token_key` as spent until `remember_until`
/// and starts `session`, in one transaction; false (and nothing written)
/// when the token was spent before. The primary key arbitrates between
/// concurrent exchanges of one token: exactly one insert wins.
pub(super) async fn start_exchanged_session(
    conn: &mut Conn,
    token_key: &str,
    remember_until: i64,
    session: &NewSession,
    audit: &AuditEvent,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::exchanged_provider_tokens as x;
        let first = diesel::insert_into(x::table)
            .values((x::token_key.eq(token_key), x::expires_at.eq(remember_until)))
            .on_conflict(x::token_key)
            .do_nothing()
            .execute(conn)
            .await?
            == 1;
        if !first {
            return Ok(false);
        }
        insert_session(conn, session).await?;
        insert_audit(conn, audit).await?;
        Ok(true)
    })
}

/// Whether the provider token `token_key` was exchanged already (a cheap
/// early answer; `start_exchanged_session` is the arbiter).
pub(super) async fn is_exchanged_token(conn: &mut Conn, token_key: &str) -> QueryResult<bool> {
    use schema::exchanged_provider_tokens as x;
    x::table
        .filter(x::token_key.eq(token_key))
        .select(x::token_key)
        .first::<String>(conn)
        .await
        .optional()
        .map(|found| found.is_some())
}

// ---------------------------------------------------------------------------
// Service clients (client credentials for ServiceLogin). Each acts as a
// service principal profile of its own, so "the client's sessions" are that
// profile's: revoked and announced in one statement and one announcement.

const SERVICE_CLIENT_COLUMNS: (
    schema::service_clients::client_id,
    schema::service_clients::profile_id,
    schema::service_clients::secret_hash,
    schema::service_clients::roles,
    schema::service_clients::created_at,
    schema::service_clients::rotated_at,
    schema::service_clients::disabled_at,
) = (
    schema::service_clients::client_id,
    schema::service_clients::profile_id,
    schema::service_clients::secret_hash,
    schema::service_clients::roles,
    schema::service_clients::created_at,
    schema::service_clients::rotated_at,
    schema::service_clients::disabled_at,
);

/// Creates the client's service principal and the client, in one
/// transaction (a principal name in use is a conflict on `auth_id`).
pub(super) async fn create_service_client(
    conn: &mut Conn,
    profile: &Profile,
    client: &ServiceClientRow,
    audit: &[AuditEvent],
) -> QueryResult<()> {
    write_tx!(conn, async |conn| {
        use schema::service_clients as c;
        insert_profile(conn, profile).await?;
        diesel::insert_into(c::table)
            .values((
                c::client_id.eq(&client.client_id),
                c::profile_id.eq(DbId(client.profile_id)),
                c::secret_hash.eq(&client.secret_hash),
                c::roles.eq(&client.roles),
                c::created_at.eq(client.created_at),
            ))
            .execute(conn)
            .await?;
        for event in audit {
            insert_audit(conn, event).await?;
        }
        Ok(())
    })
}

pub(super) async fn find_service_client(conn: &mut Conn, client_id: &str) -> QueryResult<Option<ServiceClient>> {
    use schema::{profiles as p, service_clients as c};
    c::table
        .inner_join(p::table)
        .filter(c::client_id.eq(client_id))
        .select((SERVICE_CLIENT_COLUMNS, PROFILE_COLUMNS))
        .first::<(ServiceClientRow, ProfileRow)>(conn)
        .await
        .optional()
        .map(|found| found.map(|(row, profile)| ServiceClient { row, profile: profile.into() }))
}

/// Revokes every live session of `profile` and announces it.
async fn revoke_all_sessions_of(conn: &mut Conn, profile: Id, reason: &str, now: DateTime<Utc>) -> QueryResult<usize> {
    use schema::sessions as s;
    let revoked = diesel::update(s::table.filter(s::profile_id.eq(DbId(profile))).filter(s::revoked_at.is_null()))
        .set((s::revoked_at.eq(now), s::revoke_reason.eq(reason)))
        .execute(conn)
        .await?;
    if revoked > 0 {
        notify_revoked!(conn, Revoked::Profile { profile, except: None })?;
    }
    Ok(revoked)
}

/// Rotates the secret of an enabled client, or disables it for good, and
/// revokes its sessions, in one transaction; `None` when there is no such
/// enabled client. Returns the sessions revoked.
pub(super) async fn change_service_client(
    conn: &mut Conn,
    client_id: &str,
    change: ServiceClientChange<'_>,
    now: DateTime<Utc>,
    audit: &AuditEvent,
) -> QueryResult<Option<usize>> {
    write_tx!(conn, async |conn| {
        use schema::service_clients as c;
        let profile = c::table
            .filter(c::client_id.eq(client_id))
            .filter(c::disabled_at.is_null())
            .select(c::profile_id)
            .first::<DbId>(conn)
            .await
            .optional()?
            .map(Id::from);
        let Some(profile) = profile else {
            return Ok(None);
        };
        let enabled = c::table
            .filter(c::client_id.eq(client_id))
            .filter(c::disabled_at.is_null());
        let (updated, reason) = match change {
            ServiceClientChange::Rotate { new_hash } => (
                diesel::update(enabled)
                    .set((c::secret_hash.eq(new_hash), c::rotated_at.eq(Some(now))))
                    .execute(conn)
                    .await?,
                "service_client_rotated",
            ),
            ServiceClientChange::Disable => (
                diesel::update(enabled)
                    .set(c::disabled_at.eq(Some(now)))
                    .execute(conn)
                    .await?,
                "service_client_disabled",
            ),
        };
        if updated != 1 {
            return Ok(None);
        }
        let revoked = revoke_all_sessions_of(conn, profile, reason, now).await?;
        insert_audit(conn, audit).await?;
        Ok(Some(revoked))
    })
}

/// Starts a session of a service client's principal while the client is
/// still enabled with the secret that was verified; false (nothing written)
/// otherwise. The no-op update takes the client's row lock until commit, so
/// a concurrent rotation or disabling either committed first (and this is
/// false) or waits for this transaction and then revokes what it started.
pub(super) async fn start_service_session(
    conn: &mut Conn,
    client_id: &str,
    verified_hash: &str,
    session: &NewSession,
    audit: &AuditEvent,
) -> QueryResult<bool> {
    write_tx!(conn, async |conn| {
        use schema::service_clients as c;
        let still = diesel::update(
            c::table
                .filter(c::client_id.eq(client_id))
                .filter(c::secret_hash.eq(verified_hash))
                .filter(c::disabled_at.is_null()),
        )
        .set(c::secret_hash.eq(c::secret_hash))
        .execute(conn)
        .await?
            == 1;
        if !still {
            return Ok(false);
        }
        insert_session(conn, session).await?;
        insert_audit(conn, audit).await?;
        Ok(true)
    })
}
