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
            .values(profile_values!(
                candidate,
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
