// The audit trail.

columns!(AUDIT_COLUMNS = audit_events(
    id,
    occurred_at,
    event_name,
    profile_id,
    session_id,
    client_addr,
    detail,
));

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
        .select(AUDIT_COLUMNS)
        .filter(a::occurred_at.ge(since))
        .order((a::occurred_at.asc(), a::id.asc()))
        .limit(limit)
        .into_boxed();
    if let Some(profile) = profile {
        query = query.filter(a::profile_id.eq(DbId(profile)));
    }
    query.load(conn).await
}

/// Audit rows newest first (ListAuditEvents): those `filter` selects,
/// strictly after `after` (the last row of the previous page) in that order.
pub(super) async fn list_audit(
    conn: &mut Conn,
    filter: &AuditFilter,
    after: Option<(DateTime<Utc>, Id)>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    use schema::audit_events as a;
    let mut query = a::table
        .select(AUDIT_COLUMNS)
        .order((a::occurred_at.desc(), a::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some(name) = &filter.event_name {
        query = query.filter(a::event_name.eq(name.clone()));
    }
    if let Some(profile) = filter.profile_id {
        query = query.filter(a::profile_id.eq(DbId(profile)));
    }
    if let Some(since) = filter.since {
        query = query.filter(a::occurred_at.ge(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(a::occurred_at.lt(until));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            a::occurred_at
                .lt(at)
                .or(a::occurred_at.eq(at).and(a::id.lt(DbId(id)))),
        );
    }
    query.load(conn).await
}
