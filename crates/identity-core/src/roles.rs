//! Role names and `auth_provider` names with a meaning to the service
//! itself.

use crate::error::Invalid;

/// May read, change and delete every profile and change roles.
pub const ADMIN_ROLE: &str = "admin";

/// May watch the revocation stream (AuthService.WatchRevocations). For
/// service principals only: it tells who was signed out when, which is no
/// person's business, and a verifier's token is copied into configuration.
pub const REVOCATIONS_WATCH_ROLE: &str = "revocations:watch";

/// A service role: may call ProfileService.CreateProfile for external
/// accounts (without roles) and RevokeAllSessions by (auth_provider,
/// auth_id) for them.
pub const PROVISIONER_ROLE: &str = "provisioner";

/// A service role, least privilege for services that show other users'
/// profiles: GetProfile and LookupProfile of any profile, nothing else.
pub const PROFILES_READ_ROLE: &str = "profiles:read";

/// Roles only service principals hold: they are granted with a service
/// client or token, never to a person (whose token travels with them). The
/// names with a `:` are accepted by `validation::roles` for these alone, so
/// no role a person was ever given can collide with one.
pub const SERVICE_ONLY_ROLES: &[&str] =
    &[PROVISIONER_ROLE, PROFILES_READ_ROLE, REVOCATIONS_WATCH_ROLE];

/// `auth_provider` of service principals (the profiles service clients and
/// service tokens act as).
pub const SERVICE_PROVIDER: &str = "service";

/// `auth_provider` of accounts registered here, with a password.
pub const LOCAL_PROVIDER: &str = "local";

/// `auth_provider` values the service itself uses.
pub const RESERVED_PROVIDER_NAMES: &[&str] = &[LOCAL_PROVIDER, SERVICE_PROVIDER];

/// Whether `name` is, or passes for, one of [`RESERVED_PROVIDER_NAMES`]:
/// compared trimmed, without the characters a reader never sees and
/// without regard to case (Unicode's, so `ſervice` counts), so `Local`,
/// ` SERVICE` or `local` followed by a zero-width space cannot be made to
/// look like the service's own accounts to a reader or a case-insensitive
/// consumer.
pub fn is_reserved_provider(name: &str) -> bool {
    let folded: String = name
        .trim()
        .chars()
        .filter(|c| !is_invisible(*c))
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    let folded = folded.trim();
    RESERVED_PROVIDER_NAMES.contains(&folded)
}

/// Unicode's default-ignorable code points: drawn as nothing, so a name
/// holding one reads as the name without it.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{61c}'
            | '\u{115f}'..='\u{1160}'
            | '\u{17b4}'..='\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

fn is_service_provider(auth_provider: &str) -> bool {
    auth_provider.trim().eq_ignore_ascii_case(SERVICE_PROVIDER)
}

/// The roles a profile of `auth_provider` may be given, on top of what
/// `validation::roles` checks: never `admin` for a service principal. A
/// service's credentials sit in configuration files and its tokens are
/// copied around; admins are people.
pub fn check_for_provider(auth_provider: &str, roles: &[String]) -> Result<(), Invalid> {
    if is_service_provider(auth_provider) && roles.iter().any(|r| r == ADMIN_ROLE) {
        return Err(
            "admin is for people (IDENTITY_BOOTSTRAP_ADMINS, identity admin grant-role), \
             never for a service principal"
                .into(),
        );
    }
    if !is_service_provider(auth_provider)
        && let Some(role) = roles
            .iter()
            .find(|r| SERVICE_ONLY_ROLES.contains(&r.as_str()))
    {
        return Err(format!(
            "{role} is a service role: only service principals hold it \
             (identity admin create-service-client --role {role})"
        )
        .into());
    }
    Ok(())
}

/// Whether a profile may read every profile (GetProfile, LookupProfile):
/// a service principal holding [`PROFILES_READ_ROLE`]. A person holding it
/// anyway, by a row changed in SQL, reads only their own.
pub fn reads_every_profile(auth_provider: &str, roles: &[String]) -> bool {
    is_service_provider(auth_provider) && roles.iter().any(|r| r == PROFILES_READ_ROLE)
}

/// The roles a profile is reported to hold (ValidateToken): those it holds,
/// but never `admin` for a service principal, for the reason of
/// [`acts_as_admin`], and never a service-only role for anyone else.
pub fn effective(auth_provider: &str, mut roles: Vec<String>) -> Vec<String> {
    if is_service_provider(auth_provider) {
        roles.retain(|r| r != ADMIN_ROLE);
    } else {
        roles.retain(|r| !SERVICE_ONLY_ROLES.contains(&r.as_str()));
    }
    roles
}

/// Whether a profile may watch revocations: a service principal holding
/// [`REVOCATIONS_WATCH_ROLE`] (a person's profile given it by SQL does not).
pub fn may_watch_revocations(auth_provider: &str, roles: &[String]) -> bool {
    is_service_provider(auth_provider) && roles.iter().any(|r| r == REVOCATIONS_WATCH_ROLE)
}

/// Whether a profile acts as an admin: it holds the role and is no service
/// principal, so that a row changed outside the API (SQL, an older version)
/// does not make a service an admin either.
pub fn acts_as_admin(auth_provider: &str, roles: &[String]) -> bool {
    roles.iter().any(|r| r == ADMIN_ROLE) && !is_service_provider(auth_provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_principals_never_hold_nor_act_with_admin() {
        let admin = vec![ADMIN_ROLE.to_owned()];
        for provider in ["service", "Service", " SERVICE "] {
            assert!(check_for_provider(provider, &admin).is_err(), "{provider}");
            assert!(!acts_as_admin(provider, &admin), "{provider}");
        }
        assert!(check_for_provider("service", &["provisioner".to_owned()]).is_ok());
        assert!(check_for_provider("service", &["profiles:read".to_owned()]).is_ok());
        assert!(check_for_provider("local", &admin).is_ok());
        assert!(acts_as_admin("local", &admin));
        assert!(!acts_as_admin("local", &["provisioner".to_owned()]));
        let both = vec![ADMIN_ROLE.to_owned(), "provisioner".to_owned()];
        assert_eq!(effective("service", both.clone()), ["provisioner"]);
        // provisioner is a service role: a person holding it by SQL is not told so.
        assert_eq!(effective("local", both.clone()), [ADMIN_ROLE]);
    }

    #[test]
    fn the_watch_role_is_for_service_principals_only() {
        let watch = vec![REVOCATIONS_WATCH_ROLE.to_owned()];
        assert!(check_for_provider("service", &watch).is_ok());
        assert!(may_watch_revocations("service", &watch));
        for provider in ["local", "better-auth"] {
            assert!(check_for_provider(provider, &watch).is_err(), "{provider}");
            assert!(!may_watch_revocations(provider, &watch), "{provider}");
            assert!(effective(provider, watch.clone()).is_empty(), "{provider}");
        }
        assert!(!may_watch_revocations(
            "service",
            &["provisioner".to_owned()]
        ));
    }

    #[test]
    fn service_roles_are_never_granted_to_people_and_only_services_read_every_profile() {
        for provider in ["local", "better-auth"] {
            for role in SERVICE_ONLY_ROLES {
                let roles = vec![(*role).to_owned()];
                let refused = check_for_provider(provider, &roles).unwrap_err();
                assert!(
                    refused.description().contains("service role"),
                    "{provider} {role}"
                );
                assert!(!reads_every_profile(provider, &roles), "{provider} {role}");
            }
        }
        let read = vec![PROFILES_READ_ROLE.to_owned()];
        assert!(reads_every_profile("service", &read));
        assert!(!reads_every_profile("service", &["provisioner".to_owned()]));
    }

    #[test]
    fn reserved_provider_names_are_recognised_in_any_spelling() {
        assert_eq!(RESERVED_PROVIDER_NAMES, ["local", "service"]);
        for name in [
            "local",
            "Local",
            " LOCAL ",
            "service",
            "Service\t",
            "local\u{200b}",
            "\u{feff}service",
            "loc\u{ad}al",
            "serv\u{2060}ice",
            "\u{17f}ervice",
            "\u{200b} local",
        ] {
            assert!(is_reserved_provider(name), "{name:?}");
        }
        for name in ["better-auth", "locals", "lo cal", ""] {
            assert!(!is_reserved_provider(name), "{name:?}");
        }
    }
}
