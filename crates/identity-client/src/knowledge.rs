//! What the revocation stream taught this verifier, and the decision it
//! supports for one token. Pure: times are passed in, so the rules are
//! tested without a clock or a server.
//!
//! The rules (proto/identity/v1/auth.proto, `RevocationEvent`):
//! - `session_revoked`: refuse every token whose `sid` is the session,
//!   until `expire_time`.
//! - `profile_sessions_revoked`: refuse every token of the profile (`sub`)
//!   with `iat` at or before `revoke_time`, unless its `sid` is
//!   `except_session_id`; until `expire_time`.
//! - `profile_changed`: the profile's `roles` claim is stale for tokens
//!   issued before the change: their roles come from `ValidateToken`.
//! - `reset` (and the start of every stream that did not resume): what
//!   happened before is unknown, so every token issued before it is checked
//!   once per session with `ValidateToken`, which also answers the current
//!   roles. Revocations already known stay known.
//!
//! "Before" is judged with the token's `iat` (identity's clock) against this
//! verifier's clock plus the leeway, so a skew up to the leeway errs on the
//! side of asking.

use std::collections::{HashMap, HashSet};

/// Access tokens live at most 24 h (IDENTITY_ACCESS_TOKEN_TTL's bound): a
/// role change older than that (plus the leeway) concerns no live token.
const LONGEST_TOKEN_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone)]
struct ProfileRevocation {
    revoke_time: i64,
    except_session_id: Option<String>,
    expire_time: i64,
}

#[derive(Debug, Clone)]
struct RolesChanged {
    /// When the change (or the reset) was heard, this verifier's clock.
    at: i64,
    /// The roles `ValidateToken` answered after it, if asked yet.
    current: Option<Vec<String>>,
}

/// What one token needs beyond its signature and claims.
/// ValidateToken's "inactive" for a session, as remembered.
#[derive(Debug, Clone, Copy)]
struct Inactive {
    /// The newest refused token's `iat`: tokens issued after it are asked.
    issued_by: i64,
    /// Until when the answer is reused.
    until: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Refused: its session was revoked.
    Revoked,
    /// Accepted offline, with these roles.
    Accept(Vec<String>),
    /// Only `ValidateToken` can tell (issued before a reset in a session
    /// not yet vouched for, or its profile's roles changed since).
    AskRemote,
}

/// The token fields the rules read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenFacts<'a> {
    pub sub: &'a str,
    pub sid: &'a str,
    pub iat: i64,
    pub roles: &'a [String],
}

#[derive(Debug, Default)]
pub(crate) struct Knowledge {
    revoked_sessions: HashMap<String, i64>,
    profile_revocations: HashMap<String, Vec<ProfileRevocation>>,
    roles_changed: HashMap<String, RolesChanged>,
    /// Sessions ValidateToken vouched for since the last reset.
    vouched: HashSet<String>,
    /// Sessions ValidateToken called inactive, until when that answer is
    /// reused (see [`Knowledge::inactive`]).
    inactive: HashMap<String, Inactive>,
    /// The last reset, this verifier's clock; `None`: no stream yet, so
    /// nothing issued before now can be vouched for.
    reset_at: Option<i64>,
    /// Bumped by every reset and profile change: a ValidateToken answer
    /// that raced one is used for its call but not remembered.
    epoch: u64,
    pub(crate) cursor: String,
}

impl Knowledge {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn decide(&self, token: TokenFacts<'_>, leeway: i64) -> Decision {
        if self.revoked_sessions.contains_key(token.sid) {
            return Decision::Revoked;
        }
        if let Some(rules) = self.profile_revocations.get(token.sub) {
            let refused = rules.iter().any(|r| {
                token.iat <= r.revoke_time && r.except_session_id.as_deref() != Some(token.sid)
            });
            if refused {
                return Decision::Revoked;
            }
        }
        let before_reset = self.reset_at.is_none_or(|at| token.iat <= at + leeway);
        if before_reset && !self.vouched.contains(token.sid) {
            return Decision::AskRemote;
        }
        match self.roles_changed.get(token.sub) {
            Some(RolesChanged {
                current: Some(roles),
                ..
            }) => Decision::Accept(roles.clone()),
            Some(RolesChanged { at, current: None }) if token.iat <= at + leeway => {
                Decision::AskRemote
            }
            _ if before_reset => Decision::AskRemote,
            _ => Decision::Accept(token.roles.to_vec()),
        }
    }

    /// Remembers what ValidateToken answered for a token of `sub` in `sid`,
    /// asked at `epoch`: the session was live after the last reset, and the
    /// profile holds `roles`.
    pub(crate) fn vouch(&mut self, epoch: u64, sub: &str, sid: &str, roles: &[String]) {
        if epoch != self.epoch {
            return;
        }
        self.vouched.insert(sid.to_owned());
        let at = self.reset_at.unwrap_or(i64::MIN);
        let entry = self
            .roles_changed
            .entry(sub.to_owned())
            .or_insert(RolesChanged { at, current: None });
        entry.current = Some(roles.to_vec());
    }

    /// ValidateToken called a token of `sid` inactive: the same answer is
    /// given without asking until `until`. Without it, every request with
    /// a token revoked before a reset would cost a ValidateToken, and its
    /// holder could spend this service's ValidateToken quota at identity.
    /// Short, since identity may have answered inactive for a reason of its
    /// own (a replica missing a key mid-rotation).
    ///
    /// Only for tokens of `sid` issued no later than the refused one
    /// (`iat`): identity may have refused that token alone (expired by its
    /// shorter leeway), and a session that is revoked issues no newer
    /// token, so a newer one is asked about.
    pub(crate) fn inactive(&mut self, epoch: u64, sid: &str, iat: i64, until: i64) {
        if epoch == self.epoch {
            let entry = self.inactive.entry(sid.to_owned()).or_insert(Inactive {
                issued_by: iat,
                until,
            });
            entry.issued_by = entry.issued_by.max(iat);
            entry.until = entry.until.max(until);
        }
    }

    pub(crate) fn known_inactive(&self, sid: &str, iat: i64, now: i64) -> bool {
        self.inactive
            .get(sid)
            .is_some_and(|known| now <= known.until && iat <= known.issued_by)
    }

    pub(crate) fn session_revoked(&mut self, sid: String, expire_time: i64) {
        self.vouched.remove(&sid);
        self.revoked_sessions.insert(sid, expire_time);
    }

    pub(crate) fn profile_sessions_revoked(
        &mut self,
        profile_id: String,
        except_session_id: String,
        revoke_time: i64,
        expire_time: i64,
    ) {
        self.profile_revocations
            .entry(profile_id)
            .or_default()
            .push(ProfileRevocation {
                revoke_time,
                except_session_id: (!except_session_id.is_empty()).then_some(except_session_id),
                expire_time,
            });
    }

    pub(crate) fn profile_changed(&mut self, profile_id: String, now: i64) {
        self.epoch += 1;
        self.roles_changed.insert(
            profile_id,
            RolesChanged {
                at: now,
                current: None,
            },
        );
    }

    pub(crate) fn reset(&mut self, now: i64) {
        self.epoch += 1;
        self.reset_at = Some(now);
        self.vouched.clear();
        self.roles_changed.clear();
    }

    /// Forgets what no unexpired token can need any more.
    pub(crate) fn prune(&mut self, now: i64, leeway: i64) {
        self.revoked_sessions.retain(|_, expire| *expire >= now);
        self.inactive.retain(|_, known| known.until >= now);
        self.profile_revocations.retain(|_, rules| {
            rules.retain(|r| r.expire_time >= now);
            !rules.is_empty()
        });
        self.roles_changed
            .retain(|_, c| c.at + LONGEST_TOKEN_SECS + leeway >= now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEEWAY: i64 = 30;
    const T: i64 = 1_800_000_000;

    fn facts<'a>(sub: &'a str, sid: &'a str, iat: i64, roles: &'a [String]) -> TokenFacts<'a> {
        TokenFacts {
            sub,
            sid,
            iat,
            roles,
        }
    }

    fn after_reset() -> Knowledge {
        let mut k = Knowledge::default();
        k.reset(T);
        k
    }

    #[test]
    fn without_a_stream_every_token_needs_identitys_word() {
        let k = Knowledge::default();
        assert_eq!(
            k.decide(facts("p", "s", T, &[]), LEEWAY),
            Decision::AskRemote
        );
    }

    #[test]
    fn tokens_issued_up_to_the_leeway_after_a_reset_are_vouched_for_once_per_session() {
        let mut k = after_reset();
        let roles = vec!["admin".to_owned()];
        for iat in [T - 600, T, T + LEEWAY] {
            assert_eq!(
                k.decide(facts("p", "s", iat, &roles), LEEWAY),
                Decision::AskRemote
            );
        }
        assert_eq!(
            k.decide(facts("p", "s", T + LEEWAY + 1, &roles), LEEWAY),
            Decision::Accept(roles.clone()),
            "issued after the reset: the stream covers it"
        );
        k.vouch(k.epoch(), "p", "s", &[]);
        assert_eq!(
            k.decide(facts("p", "s", T - 600, &roles), LEEWAY),
            Decision::Accept(vec![]),
            "vouched: the current roles, not the claim"
        );
        assert_eq!(
            k.decide(facts("p", "other", T - 600, &roles), LEEWAY),
            Decision::AskRemote,
            "another session of the profile is not vouched for"
        );
        k.reset(T + 100);
        assert_eq!(
            k.decide(facts("p", "s", T - 600, &roles), LEEWAY),
            Decision::AskRemote
        );
    }

    #[test]
    fn an_answer_that_raced_a_reset_or_a_change_is_not_remembered() {
        let mut k = after_reset();
        let asked_at = k.epoch();
        k.profile_changed("p".into(), T + 5);
        k.vouch(asked_at, "p", "s", &["admin".to_owned()]);
        assert_eq!(
            k.decide(facts("p", "s", T, &[]), LEEWAY),
            Decision::AskRemote
        );
    }

    #[test]
    fn a_revoked_session_is_refused_until_its_expiry_then_forgotten() {
        let mut k = after_reset();
        k.vouch(k.epoch(), "p", "s", &[]);
        k.session_revoked("s".into(), T + 1800);
        assert_eq!(
            k.decide(facts("p", "s", T + 100, &[]), LEEWAY),
            Decision::Revoked
        );
        k.prune(T + 1800, LEEWAY);
        assert_eq!(
            k.decide(facts("p", "s", T + 100, &[]), LEEWAY),
            Decision::Revoked
        );
        k.prune(T + 1801, LEEWAY);
        assert_ne!(
            k.decide(facts("p", "s", T + 100, &[]), LEEWAY),
            Decision::Revoked
        );
    }

    #[test]
    fn revoking_a_profiles_sessions_refuses_tokens_issued_up_to_then_except_the_kept_one() {
        let mut k = after_reset();
        let at = T + 100;
        k.profile_sessions_revoked("p".into(), "kept".into(), at, at + 1830);
        assert_eq!(
            k.decide(facts("p", "s", at, &[]), LEEWAY),
            Decision::Revoked
        );
        assert_eq!(
            k.decide(facts("p", "s", at - 50, &[]), LEEWAY),
            Decision::Revoked
        );
        assert_eq!(
            k.decide(facts("p", "s", at + 1, &[]), LEEWAY),
            Decision::Accept(vec![]),
            "signed in after the revocation"
        );
        assert_eq!(
            k.decide(facts("p", "kept", at, &[]), LEEWAY),
            Decision::Accept(vec![]),
            "except_session_id keeps its session"
        );
        assert_eq!(
            k.decide(facts("q", "s2", at, &[]), LEEWAY),
            Decision::Accept(vec![]),
            "another profile"
        );
        k.prune(at + 1831, LEEWAY);
        assert_eq!(
            k.decide(facts("p", "s", at, &[]), LEEWAY),
            Decision::Accept(vec![])
        );
    }

    #[test]
    fn after_a_role_change_the_claim_is_not_reported_until_identity_answers() {
        let mut k = after_reset();
        let claimed = vec!["editor".to_owned()];
        let issued = T + 100;
        k.profile_changed("p".into(), T + 200);
        assert_eq!(
            k.decide(facts("p", "s", issued, &claimed), LEEWAY),
            Decision::AskRemote
        );
        k.vouch(k.epoch(), "p", "s", &[]);
        assert_eq!(
            k.decide(facts("p", "s", issued, &claimed), LEEWAY),
            Decision::Accept(vec![])
        );
        assert_eq!(
            k.decide(facts("q", "t", issued, &claimed), LEEWAY),
            Decision::Accept(claimed.clone()),
            "other profiles keep their claims"
        );
        k.prune(T + 200 + LONGEST_TOKEN_SECS + LEEWAY + 1, LEEWAY);
        assert_eq!(
            k.decide(facts("p", "s", issued, &claimed), LEEWAY),
            Decision::Accept(claimed),
            "forgotten once no token from before it can be alive"
        );
    }

    #[test]
    fn an_inactive_answer_is_reused_for_a_short_while_only() {
        let mut k = after_reset();
        k.inactive(k.epoch(), "s", T - 5, T + 30);
        assert!(k.known_inactive("s", T - 5, T + 30));
        assert!(!k.known_inactive("other", T - 5, T));
        assert!(
            !k.known_inactive("s", T - 5, T + 31),
            "asked again after it"
        );
        let stale_epoch = k.epoch();
        k.reset(T + 40);
        k.inactive(stale_epoch, "t", T - 5, T + 70);
        assert!(
            !k.known_inactive("t", T - 5, T + 50),
            "an answer that raced a reset"
        );
    }

    #[test]
    fn an_inactive_answer_for_an_old_token_does_not_refuse_the_sessions_newer_ones() {
        // identity called an expired token of a live session inactive (its
        // leeway is shorter than this verifier's); the token its holder
        // refreshed right after must be asked about, not refused for 30 s.
        let mut k = after_reset();
        k.inactive(k.epoch(), "s", T - 70, T + 30);
        assert!(k.known_inactive("s", T - 70, T), "the same token");
        assert!(k.known_inactive("s", T - 80, T), "an older one");
        assert!(!k.known_inactive("s", T - 1, T), "one issued after it");
    }

    #[test]
    fn a_reset_keeps_known_revocations_and_drops_roles() {
        let mut k = after_reset();
        k.session_revoked("gone".into(), T + 1800);
        k.profile_changed("p".into(), T + 10);
        k.vouch(k.epoch(), "p", "s", &["admin".to_owned()]);
        k.reset(T + 50);
        assert_eq!(
            k.decide(facts("p", "gone", T + 100, &[]), LEEWAY),
            Decision::Revoked
        );
        assert_eq!(
            k.decide(facts("p", "s", T + 20, &[]), LEEWAY),
            Decision::AskRemote
        );
    }
}
