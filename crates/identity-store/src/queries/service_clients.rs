// Service clients (client credentials for ServiceLogin). Each acts as a
// service principal profile of its own, so "the client's sessions" are that
// profile's: revoked and announced in one statement and one announcement.

columns!(SERVICE_CLIENT_COLUMNS = service_clients(
    client_id,
    profile_id,
    secret_hash,
    roles,
    created_at,
    rotated_at,
    disabled_at,
));

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
        let revoked = revoke_sessions_of(conn, profile, None, reason, now).await?;
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
