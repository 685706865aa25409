//! Hostile strings (SQL, LIKE patterns, quotes, controls, bidirectional
//! marks, 10 KB): each field stores them byte for byte or refuses them by
//! name, lookups compare exactly, and the table keeps working after them.

use super::*;
use crate::on_both_backends;
use crate::support::assert_invalid;
use std::collections::HashSet;
use tonic::Code;

on_both_backends!(
    hostile_display_names_round_trip_byte_for_byte_or_are_refused_by_name,
    hostile_auth_ids_round_trip_and_lookups_compare_exactly,
    hostile_avatar_urls_round_trip_byte_for_byte_or_are_refused_by_name,
    locales_are_only_bcp_47_tags_kept_as_sent,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Valid by the contract: must be stored byte for byte.
    Accept,
    /// Invalid by the contract: must be refused, naming the field.
    Refuse,
    /// Either stored byte for byte or refused naming the field.
    Either,
}

fn hostile_strings() -> Vec<(&'static str, String)> {
    vec![
        ("double quotes", r#"say "cheese""#.into()),
        ("single quote", "O'Brien".into()),
        ("sql comment injection", "'; DROP TABLE profiles; --".into()),
        ("sql quoted injection", r#"" OR ""=""#.into()),
        ("sql union", "x' UNION SELECT * FROM profiles --".into()),
        ("percent", "100%".into()),
        ("lone percent", "%".into()),
        ("lone underscore", "_".into()),
        ("like pattern", "a%b_c".into()),
        ("backslashes", r"C:\new\table\\x".into()),
        ("escaped quotes", r#"\'\"\\"#.into()),
        ("emoji", "👩🏽‍💻 Ann 🎉".into()),
        ("combining accent", "Rene\u{301}e".into()),
        ("rtl mark", "abc\u{200f}def".into()),
        ("rtl override", "\u{202e}gpj.exe".into()),
        ("byte order mark", "\u{feff}bom".into()),
        ("html", "<script>alert(1)</script>".into()),
        ("json", r#"{"$ne": null}"#.into()),
        ("nul", "a\u{0}b".into()),
        ("escape sequence", "\u{1b}[31mred".into()),
        ("newline", "two\nlines".into()),
        ("carriage return", "two\rlines".into()),
        ("delete", "del\u{7f}".into()),
        ("c1 control", "next\u{85}line".into()),
        ("10 KB ascii", "x".repeat(10 * 1024)),
        ("10 KB quotes", "'\"".repeat(5 * 1024)),
        ("10 KB two-byte", "é".repeat(5 * 1024)),
        ("100 four-byte characters", "😀".repeat(100)),
        ("CaseSensitive", "CaseSensitive".into()),
    ]
}

/// Bidirectional controls and the byte order mark: printable by the letter
/// of "no control characters", so an implementation may take or refuse them.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn display_name_rule(value: &str) -> Expect {
    if value.is_empty() || value.chars().count() > 100 || value.chars().any(char::is_control) {
        Expect::Refuse
    } else if value.chars().any(is_format_char) {
        Expect::Either
    } else {
        Expect::Accept
    }
}

fn auth_id_rule(value: &str) -> Expect {
    if value.is_empty() || value.len() > 255 {
        Expect::Refuse
    } else if value.chars().any(|c| c.is_control() || is_format_char(c)) {
        Expect::Either
    } else {
        Expect::Accept
    }
}

/// Checks one outcome; returns the stored profile when it was accepted.
#[track_caller]
fn judge(
    case: &str,
    field: &str,
    expect: Expect,
    result: Result<UserProfile, Status>,
) -> Option<UserProfile> {
    match result {
        Ok(stored) => {
            assert_ne!(expect, Expect::Refuse, "{field} {case}: accepted");
            Some(stored)
        }
        Err(status) => {
            assert_ne!(
                expect,
                Expect::Accept,
                "{field} {case}: refused: {status:?}"
            );
            assert_invalid(
                &status,
                &format!("profile.{field}"),
                &format!("{field} {case}"),
            );
            None
        }
    }
}

/// After hostile writes, the table still works: exactly the `accepted`
/// hostile-idp profiles are listed, plain creates, registrations and reads
/// work, and the owner's profile is what it last stored.
async fn the_table_still_works(
    w: &mut World,
    owner: &Caller,
    current: &UserProfile,
    accepted: &HashSet<String>,
) {
    let admin = w.admin();
    let listed: HashSet<String> = admin
        .list_all(7, r#"auth_provider="hostile-idp""#)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(
        listed, *accepted,
        "exactly the accepted hostile profiles are listed"
    );
    let plain = admin
        .create(external("hostile-idp", "plain-after"))
        .await
        .expect("a plain create still works");
    assert_eq!(
        admin.lookup("hostile-idp", "plain-after").await.unwrap().id,
        plain.id
    );
    let newcomer = w.register("newcomer").await;
    assert_eq!(
        w.caller(&newcomer.tokens.access_token)
            .get("me")
            .await
            .unwrap()
            .id,
        newcomer.profile.id
    );
    assert_eq!(owner.get("me").await.unwrap(), *current);
    assert!(admin.list_all(0, "").await.len() >= accepted.len() + 4);
}

async fn hostile_display_names_round_trip_byte_for_byte_or_are_refused_by_name(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let account = w.register("hostile").await;
    let owner = w.caller(&account.tokens.access_token);
    let mut current = owner.get("me").await.unwrap();

    // display_name, set by the owner.
    for (case, value) in hostile_strings() {
        let result = owner
            .update(
                UserProfile {
                    display_name: value.clone(),
                    ..target(&current)
                },
                &["display_name"],
            )
            .await;
        let stored = judge(case, "display_name", display_name_rule(&value), result);
        let now = owner.get("me").await.unwrap();
        match stored {
            Some(stored) => {
                assert_same_bytes(&stored.display_name, &value, case);
                assert_same_bytes(&now.display_name, &value, case);
                assert_same_bytes(
                    &admin.get(&now.id).await.unwrap().display_name,
                    &value,
                    case,
                );
                current = now;
            }
            None => assert_eq!(now, current, "{case}: a refusal changed nothing"),
        }
    }
    the_table_still_works(&mut w, &owner, &current, &HashSet::new()).await;
}

async fn hostile_auth_ids_round_trip_and_lookups_compare_exactly(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let account = w.register("hostile").await;
    let owner = w.caller(&account.tokens.access_token);
    let current = owner.get("me").await.unwrap();

    // auth_id, through CreateProfile, read back by id and by lookup.
    let mut accepted: HashSet<String> = HashSet::new();
    for (case, value) in hostile_strings() {
        let result = admin
            .create(UserProfile {
                display_name: "Hostile".into(),
                ..external("hostile-idp", &value)
            })
            .await;
        match judge(case, "auth_id", auth_id_rule(&value), result) {
            Some(stored) => {
                assert_same_bytes(&stored.auth_id, &value, case);
                assert_same_bytes(&admin.get(&stored.id).await.unwrap().auth_id, &value, case);
                let found = admin
                    .lookup("hostile-idp", &value)
                    .await
                    .unwrap_or_else(|s| panic!("lookup {case}: {s:?}"));
                assert_eq!(found.id, stored.id, "lookup {case}");
                accepted.insert(stored.id);
            }
            None => {
                let status = admin.lookup("hostile-idp", &value).await.unwrap_err();
                assert!(
                    matches!(status.code(), Code::NotFound | Code::InvalidArgument),
                    "lookup of refused {case}: {status:?}"
                );
            }
        }
    }
    // Lookups compare exactly: no wildcards, no case folding, no trimming.
    for probe in [
        "%%",
        "1_0%",
        "a%",
        "_%",
        "%b_c",
        "a_b%c",
        "casesensitive",
        "CASESENSITIVE",
        "O''Brien",
        "%'; DROP TABLE profiles; --",
    ] {
        let status = admin.lookup("hostile-idp", probe).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::NotFound,
            "lookup {probe:?}: {status:?}"
        );
    }
    for probe in ["%", "_"] {
        let status = admin.lookup(probe, "%").await.unwrap_err();
        assert!(
            matches!(status.code(), Code::NotFound | Code::InvalidArgument),
            "provider {probe:?}: {status:?}"
        );
    }
    the_table_still_works(&mut w, &owner, &current, &accepted).await;
}

async fn hostile_avatar_urls_round_trip_byte_for_byte_or_are_refused_by_name(backend: Backend) {
    let mut w = World::start(backend).await;
    let account = w.register("hostile").await;
    let owner = w.caller(&account.tokens.access_token);
    let mut current = owner.get("me").await.unwrap();

    // avatar_url, set by the owner.
    let base = "https://cdn.example.com/";
    let avatars: Vec<(&str, String, Expect)> = vec![
        (
            "plain",
            format!("{base}a_b%20c.png?x=1&y=%25#frag"),
            Expect::Accept,
        ),
        ("single quote", format!("{base}o'brien.png"), Expect::Either),
        (
            "double quote",
            format!("{base}say\"cheese\".png"),
            Expect::Either,
        ),
        (
            "sql injection",
            format!("{base}';DROP%20TABLE%20profiles;--"),
            Expect::Either,
        ),
        (
            "sql injection with spaces",
            format!("{base}'; DROP TABLE profiles; --"),
            Expect::Either,
        ),
        ("bad percent escape", format!("{base}100%"), Expect::Either),
        ("backslashes", format!("{base}a\\b\\\\c"), Expect::Either),
        (
            "backslash host trick",
            "https://cdn.example.com\\@evil.example/".into(),
            Expect::Either,
        ),
        ("emoji", format!("{base}😀.png"), Expect::Either),
        ("emoji host", "https://例え.jp/😀".into(), Expect::Either),
        ("rtl mark", format!("{base}\u{200f}gnp.png"), Expect::Either),
        (
            "upper-case scheme",
            "HTTPS://CDN.EXAMPLE.COM/A.png".into(),
            Expect::Either,
        ),
        (
            "credentials",
            "https://user:pass@cdn.example.com/a.png".into(),
            Expect::Either,
        ),
        ("nul", format!("{base}a\u{0}.png"), Expect::Refuse),
        ("newline", format!("{base}a\n.png"), Expect::Refuse),
        ("escape", format!("{base}\u{1b}[31m"), Expect::Refuse),
        (
            "http",
            "http://cdn.example.com/a.png".into(),
            Expect::Refuse,
        ),
        ("javascript", "javascript:alert('x')".into(), Expect::Refuse),
        (
            "10 KB",
            format!("{base}{}", "a".repeat(10 * 1024)),
            Expect::Refuse,
        ),
    ];
    for (case, value, expect) in avatars {
        let result = owner
            .update(
                UserProfile {
                    avatar_url: value.clone(),
                    ..target(&current)
                },
                &["avatar_url"],
            )
            .await;
        let stored = judge(case, "avatar_url", expect, result);
        let now = owner.get("me").await.unwrap();
        match stored {
            Some(stored) => {
                assert_same_bytes(&stored.avatar_url, &value, case);
                assert_same_bytes(&now.avatar_url, &value, case);
                current = now;
            }
            None => assert_eq!(now, current, "{case}: a refusal changed nothing"),
        }
    }
    the_table_still_works(&mut w, &owner, &current, &HashSet::new()).await;
}

async fn locales_are_only_bcp_47_tags_kept_as_sent(backend: Backend) {
    let mut w = World::start(backend).await;
    let account = w.register("hostile").await;
    let owner = w.caller(&account.tokens.access_token);
    let mut current = owner.get("me").await.unwrap();

    // locale, set by the owner: only real BCP 47 tags, kept as sent.
    let locales: Vec<(&str, String, Expect)> = vec![
        (
            "sql injection",
            "en'; DROP TABLE profiles; --".into(),
            Expect::Refuse,
        ),
        ("quotes", "\"en\"".into(), Expect::Refuse),
        ("percent", "en%".into(), Expect::Refuse),
        ("underscore", "en_GB".into(), Expect::Refuse),
        ("like", "e_".into(), Expect::Refuse),
        ("backslash", "en\\GB".into(), Expect::Refuse),
        ("emoji", "😀".into(), Expect::Refuse),
        ("nul", "en\u{0}".into(), Expect::Refuse),
        ("rtl mark", "\u{200f}en".into(), Expect::Refuse),
        ("space", "en GB".into(), Expect::Refuse),
        ("10 KB", "a".repeat(10 * 1024), Expect::Refuse),
        (
            "10 KB of subtags",
            format!("en{}", "-abc".repeat(2500)),
            Expect::Refuse,
        ),
        ("zh-Hant-TW", "zh-Hant-TW".into(), Expect::Accept),
        ("lower-case region", "en-gb".into(), Expect::Accept),
    ];
    for (case, value, expect) in locales {
        let result = owner
            .update(
                UserProfile {
                    locale: value.clone(),
                    ..target(&current)
                },
                &["locale"],
            )
            .await;
        let stored = judge(case, "locale", expect, result);
        let now = owner.get("me").await.unwrap();
        match stored {
            Some(stored) => {
                assert_same_bytes(&stored.locale, &value, case);
                assert_same_bytes(&now.locale, &value, case);
                current = now;
            }
            None => assert_eq!(now, current, "{case}: a refusal changed nothing"),
        }
    }
    the_table_still_works(&mut w, &owner, &current, &HashSet::new()).await;
}
