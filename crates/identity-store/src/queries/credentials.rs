// Local accounts and their credential (email and password hash): sign-up,
// login, rehash, ChangePassword and ChangeEmail.

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
        // The same conditional swap as a rehash: a concurrent change of the
        // same password finds the old hash gone.
        if !upgrade_password_hash(conn, profile, expected_old_hash, new_hash, now).await? {
            return Ok(false);
        }
        revoke_sessions_of(conn, profile, Some(keep), "password_changed", now).await?;
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
        use schema::{credentials as c, profiles as p};
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
        revoke_sessions_of(conn, profile, Some(keep), "email_changed", now).await?;
        insert_audit(conn, audit).await?;
        Ok(true)
    })
}
