//! ListProfiles: a paginated walk sees every profile once despite
//! concurrent inserts; page sizes, page tokens and filters are bounded and
//! cannot be forged.

use super::*;
use crate::on_both_backends;
use crate::support::assert_invalid;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

on_both_backends!(
    a_paginated_walk_sees_every_profile_once_despite_concurrent_inserts,
    page_sizes_default_to_50_are_clamped_at_100_and_never_negative,
    page_tokens_cannot_be_edited_or_moved_to_another_query,
    filters_name_one_provider_exactly_and_are_never_patterns,
);

const FILTER: &str = r#"auth_provider="test-idp""#;

/// Creates one profile per auth_id, `batch` at a time; returns their ids.
async fn create_many(
    admin: &Caller,
    provider: &str,
    auth_ids: Vec<String>,
    batch: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(auth_ids.len());
    for chunk in auth_ids.chunks(batch) {
        let calls = chunk.iter().map(|auth_id| {
            let admin = admin.clone();
            let profile = external(provider, auth_id);
            async move { admin.create(profile).await }
        });
        for (auth_id, result) in chunk.iter().zip(futures::future::join_all(calls).await) {
            let created = result.unwrap_or_else(|s| panic!("create {auth_id}: {s:?}"));
            ids.push(created.id);
        }
    }
    ids
}

#[track_caller]
fn assert_refused_or_empty(result: Result<ListProfilesResponse, Status>, field: &str, case: &str) {
    match result {
        Ok(page) => assert!(
            page.profiles.is_empty(),
            "{case}: matched {} profiles",
            page.profiles.len()
        ),
        Err(status) => assert_invalid(&status, field, case),
    }
}

/// 300 profiles of provider test-idp: more than the largest page.
async fn three_hundred(admin: &Caller) -> Vec<String> {
    create_many(
        admin,
        "test-idp",
        (0..300).map(|i| format!("user-{i:03}")).collect(),
        25,
    )
    .await
}

async fn a_paginated_walk_sees_every_profile_once_despite_concurrent_inserts(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();
    let filter = r#"auth_provider="test-idp""#;
    let first = create_many(
        &admin,
        "test-idp",
        (0..250).map(|i| format!("user-{i:03}")).collect(),
        25,
    )
    .await;
    assert_eq!(first.iter().collect::<HashSet<_>>().len(), 250);

    // Walk with page_size 7 while another task inserts 50 more.
    let inserter = tokio::spawn({
        let admin = admin.clone();
        async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let created = admin
                    .create(external("test-idp", &format!("late-{i:02}")))
                    .await
                    .expect("concurrent create");
                ids.push(created.id);
            }
            ids
        }
    });
    let mut seen: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = admin.list(7, &token, filter).await.expect("a page");
        assert!(page.profiles.len() <= 7, "page of {}", page.profiles.len());
        for profile in page.profiles {
            assert_eq!(profile.auth_provider, "test-idp", "the filter holds");
            seen.push(profile.id);
        }
        pages += 1;
        assert!(pages <= 60, "the walk does not end");
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let late = inserter.await.expect("the inserter finished");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &seen {
        *counts.entry(id).or_default() += 1;
    }
    for id in &first {
        assert_eq!(
            counts.get(id.as_str()),
            Some(&1),
            "profile {id} seen {:?} times",
            counts.get(id.as_str())
        );
    }
    let known: HashSet<&str> = first.iter().chain(&late).map(String::as_str).collect();
    for (id, count) in &counts {
        assert_eq!(*count, 1, "{id} seen {count} times");
        assert!(known.contains(id), "{id} is not a test-idp profile");
    }

    // A quiet walk sees all 300 once, in the same order as before.
    let quiet: Vec<String> = admin
        .list_all(7, filter)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(quiet.len(), 300);
    assert_eq!(quiet.iter().collect::<HashSet<_>>().len(), 300);
    let order = |ids: &[String]| -> Vec<String> {
        ids.iter()
            .filter(|id| first.contains(id))
            .cloned()
            .collect()
    };
    assert_eq!(order(&seen), order(&quiet), "the order is stable");
}

async fn page_sizes_default_to_50_are_clamped_at_100_and_never_negative(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();
    let filter = FILTER;
    three_hundred(&admin).await;

    // Page sizes: default 50, clamped at 100, negative refused.
    let page = admin.list(0, "", filter).await.unwrap();
    assert_eq!(page.profiles.len(), 50, "default page size");
    assert!(!page.next_page_token.is_empty());
    let page = admin.list(1000, "", filter).await.unwrap();
    assert_eq!(page.profiles.len(), 100, "page_size is clamped to 100");
    assert!(!page.next_page_token.is_empty());
    for size in [-1, i32::MIN] {
        let status = admin.list(size, "", filter).await.unwrap_err();
        assert_invalid(&status, "page_size", &format!("page_size {size}"));
    }
}

async fn page_tokens_cannot_be_edited_or_moved_to_another_query(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();
    let filter = FILTER;
    three_hundred(&admin).await;

    // Page tokens cannot be edited or moved to another query.
    let token = admin.list(7, "", filter).await.unwrap().next_page_token;
    let unfiltered = admin.list(7, "", "").await.unwrap().next_page_token;
    assert!(!token.is_empty() && !unfiltered.is_empty());
    let flip = |at: usize| {
        let mut chars: Vec<char> = token.chars().collect();
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    let mut forged: Vec<(&str, String, &str)> = vec![
        ("first character flipped", flip(0), filter),
        (
            "middle character flipped",
            flip(token.chars().count() / 2),
            filter,
        ),
        (
            "last character flipped",
            flip(token.chars().count() - 1),
            filter,
        ),
        ("truncated", token[..token.len() - 2].to_owned(), filter),
        ("prefixed", format!("AAAA{token}"), filter),
        ("garbage", "not-a-page-token".into(), filter),
        ("10 KB", "A".repeat(10 * 1024), filter),
        (
            "unfiltered token under a filter",
            unfiltered.clone(),
            filter,
        ),
        ("filtered token without the filter", token.clone(), ""),
        (
            "filtered token under another filter",
            token.clone(),
            r#"auth_provider="local""#,
        ),
    ];
    if let Some(at) = token.find('.') {
        // A token of the shape payload.tag: flip inside the payload too.
        forged.push(("payload character flipped", flip(at / 2), filter));
        // Keeping a prefix of the tag must not do: a short tag is guessable.
        forged.push(("tag cut short", token[..token.len() - 4].to_owned(), filter));
        forged.push(("tag cut to one byte", token[..at + 3].to_owned(), filter));
    }
    for (case, bad, query) in forged {
        match admin.list(7, &bad, query).await {
            Err(status) => assert_invalid(&status, "page_token", case),
            Ok(page) => panic!(
                "{case}: page token {bad:?} accepted under {query:?}, giving {:?}",
                page.profiles.iter().map(|p| &p.auth_id).collect::<Vec<_>>()
            ),
        }
    }
    let page = admin
        .list(7, &token, filter)
        .await
        .expect("the real token still works");
    assert_eq!(page.profiles.len(), 7);
}

async fn filters_name_one_provider_exactly_and_are_never_patterns(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();
    let filter = FILTER;
    three_hundred(&admin).await;

    // Filters: exactly auth_provider="<name>"; anything else is refused.
    let local = admin.list_all(0, r#"auth_provider="local""#).await;
    assert_eq!(local.len(), 1, "only the admin is local");
    assert_eq!(local[0].id, w.admin.profile.id);
    assert!(
        admin.list_all(0, "").await.len() >= 301,
        "no filter lists everyone"
    );
    for bad in [
        "auth_provider='test-idp'",
        "auth_provider=test-idp",
        r#"email="someone@example.com""#,
        r#"auth_id="user-001""#,
        "garbage",
        r#"auth_provider="test-idp" OR 1=1"#,
        r#"auth_provider="test-idp"; DROP TABLE profiles; --"#,
        r#"auth_provider~"test""#,
        r#"auth_provider="test-idp"#,
    ] {
        let status = admin.list(10, "", bad).await.unwrap_err();
        assert_invalid(&status, "filter", bad);
    }
    // Quoted values are literal names, never patterns or SQL.
    for literal in [
        r#"auth_provider="%""#,
        r#"auth_provider="test_idp""#,
        r#"auth_provider="test-idp%""#,
        r#"auth_provider="x' OR '1'='1""#,
        r#"auth_provider="x" OR auth_provider="test-idp""#,
    ] {
        assert_refused_or_empty(admin.list(10, "", literal).await, "filter", literal);
    }
    assert_eq!(admin.list_all(100, filter).await.len(), 300, "still intact");
}
