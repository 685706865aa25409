// Housekeeping: what the retention jobs delete.

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

pub(super) async fn delete_audit_before(conn: &mut Conn, cutoff: DateTime<Utc>) -> QueryResult<usize> {
    use schema::audit_events as a;
    diesel::delete(a::table.filter(a::occurred_at.lt(cutoff))).execute(conn).await
}
