// Profiles: created, read, listed, updated and deleted.

columns!(PROFILE_COLUMNS = profiles(
    id,
    auth_provider,
    auth_id,
    email,
    display_name,
    avatar_url,
    locale,
    roles,
    revision,
    created_at,
    updated_at,
    provider_verified_email,
));

async fn insert_profile(conn: &mut Conn, p: &Profile) -> QueryResult<()> {
    diesel::insert_into(schema::profiles::table)
        .values(profile_values!(p))
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

pub(super) async fn find_profile(conn: &mut Conn, id: Id) -> QueryResult<Option<Profile>> {
    schema::profiles::table
        .select(PROFILE_COLUMNS)
        .filter(schema::profiles::id.eq(DbId(id)))
        .first::<ProfileRow>(conn)
        .await
        .optional()
        .map(|row| row.map(Profile::from))
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
        use schema::profiles as p;
        revoke_sessions_of(conn, id, None, "profile_deleted", now).await?;
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
