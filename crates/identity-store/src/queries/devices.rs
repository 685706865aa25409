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
