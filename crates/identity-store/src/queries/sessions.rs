// Sessions and their refresh tokens.

columns!(SESSION_COLUMNS = sessions(id, profile_id, created_at, expires_at, revoked_at));

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

/// Spends a refresh token and stores its successor (`next_hash`); if it
/// was spent before, either answers a retry (spent less than `reuse_grace`
/// ago, its successor still unspent: docs/decisions/0011) or revokes its
/// whole session (the token was stolen or replayed).
pub(super) async fn spend_refresh_token(
    conn: &mut Conn,
    presented_hash: &str,
    next_hash: &str,
    now: DateTime<Utc>,
    reuse_grace: std::time::Duration,
    client_addr: Option<&str>,
) -> QueryResult<SpendOutcome> {
    write_tx!(conn, async |conn| {
        use schema::{profiles as p, refresh_tokens as r, sessions as s};
        // Concurrent callers holding the same token take turns from here
        // to commit, so the second reads the first one's spend and
        // successor (PostgreSQL: the row lock; SQLite: BEGIN IMMEDIATE).
        let locked = lock_refresh_token!(
            r::table
                .filter(r::token_hash.eq(presented_hash))
                .select(r::spent_at)
        )
        .first::<Option<DateTime<Utc>>>(conn)
        .await
        .optional()?;
        let Some(spent_at) = locked else {
            return Ok(SpendOutcome::Unknown);
        };
        // From here on, the database's clock: the spend this call writes
        // and the one it compares with are read from the same clock,
        // whichever replica wrote it (docs/decisions/0011).
        let now: DateTime<Utc> = database_now!(conn, now);
        let (session, profile) = r::table
            .inner_join(s::table.inner_join(p::table))
            .filter(r::token_hash.eq(presented_hash))
            .select((SESSION_COLUMNS, PROFILE_COLUMNS))
            .first::<(SessionRow, ProfileRow)>(conn)
            .await?;
        let session = Session::from(session);
        if !session.is_active(now) {
            return Ok(SpendOutcome::SessionEnded);
        }
        // The conditional update stays the arbiter between concurrent
        // callers should the lock ever be missing: exactly one sees the
        // token unspent, and a loser counts it spent just now.
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
            let spent_at = spent_at.unwrap_or(now);
            // A clock stepped back makes the spend look to come from the
            // future: that counts as within the grace only by as much.
            let within_grace = !reuse_grace.is_zero()
                && chrono::TimeDelta::from_std(reuse_grace)
                    .is_ok_and(|grace| now.signed_duration_since(spent_at).abs() < grace);
            if within_grace && unspent_successor(conn, next_hash, session.id).await? {
                if !touch_session(conn, session.id, now).await? {
                    return Ok(SpendOutcome::SessionEnded);
                }
                let event = SecurityEvent::new(EventName::RefreshRetried)
                    .profile(session.profile_id)
                    .session(session.id)
                    .client(client_addr);
                insert_audit(conn, &event.audit_row()).await?;
                return Ok(SpendOutcome::Retried {
                    session,
                    profile: Box::new(profile.into()),
                    event,
                });
            }
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
        if !touch_session(conn, session.id, now).await? {
            return Ok(SpendOutcome::SessionEnded);
        }
        Ok(SpendOutcome::Rotated {
            session,
            profile: Box::new(profile.into()),
        })
    })
}

/// Whether the successor a retry would answer is still unspent in
/// `session`. Locked like the presented token, so a Refresh of the
/// successor racing this retry is decided one way: first the successor's
/// use, then the retry finds it spent (and revokes); or the other way round.
async fn unspent_successor(conn: &mut Conn, next_hash: &str, session: Id) -> QueryResult<bool> {
    use schema::refresh_tokens as r;
    let successor = lock_refresh_token!(
        r::table
            .filter(r::token_hash.eq(next_hash))
            .filter(r::session_id.eq(DbId(session)))
            .select(r::spent_at)
    )
    .first::<Option<DateTime<Utc>>>(conn)
    .await
    .optional()?;
    Ok(matches!(successor, Some(None)))
}

/// Last use moves on Refresh and not on validation, the hot path (see the
/// migration 2026-12-03-000200_session_details). False if the session was
/// revoked since it was read: the session row is not locked, and a Logout
/// or RevokeSession committing meanwhile must not be answered with fresh
/// tokens. On PostgreSQL this UPDATE waits for the revoker's row lock and
/// then re-checks `revoked_at`; on SQLite writers take turns anyway.
async fn touch_session(conn: &mut Conn, session: Id, now: DateTime<Utc>) -> QueryResult<bool> {
    use schema::sessions as s;
    diesel::update(
        s::table
            .filter(s::id.eq(DbId(session)))
            .filter(s::revoked_at.is_null()),
    )
    .set(s::last_used_at.eq(now))
    .execute(conn)
    .await
    .map(|touched| touched == 1)
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
        let revoked = revoke_sessions_of(conn, profile, except, reason, now).await?;
        if revoked > 0 {
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

/// Revokes every live session of `profile` but `except` and announces it
/// (when there was any); returns the count. The caller's transaction makes
/// it one with what caused it.
async fn revoke_sessions_of(
    conn: &mut Conn,
    profile: Id,
    except: Option<Id>,
    reason: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
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
    }
    Ok(revoked)
}
