//! Opaque page tokens for ListProfiles: the last id seen and the query they
//! belong to, under a MAC, so a token cannot be forged or moved to another
//! query.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const VERSION: &str = "p1";

fn mac(key: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = crate::secure::hmac_sha256(key);
    mac.update(b"identity/page-token/");
    mac.update(payload.as_bytes());
    mac
}

/// `query` names the filter the walk was started with.
pub fn encode(key: &[u8], last_id: &str, query: &str) -> String {
    let payload = format!("{VERSION}\n{last_id}\n{query}");
    let tag = mac(key, &payload).finalize().into_bytes();
    format!("{}.{}", B64.encode(payload), B64.encode(&tag[..16]))
}

/// The last id, if the token is ours, intact and for this query.
pub fn decode(key: &[u8], token: &str, query: &str) -> Option<String> {
    if token.len() > 1024 {
        return None;
    }
    let (payload, tag) = token.split_once('.')?;
    let payload = String::from_utf8(B64.decode(payload).ok()?).ok()?;
    let tag = B64.decode(tag).ok()?;
    // Exactly our 16 bytes: a shorter prefix would be a weaker MAC.
    if tag.len() != 16 {
        return None;
    }
    mac(key, &payload).verify_truncated_left(&tag).ok()?;
    let mut parts = payload.splitn(3, '\n');
    let (version, last_id, token_query) = (parts.next()?, parts.next()?, parts.next()?);
    (version == VERSION && token_query == query).then(|| last_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_only_for_their_key_and_query() {
        let token = encode(b"k1", "0191-id", "provider=x");
        assert_eq!(
            decode(b"k1", &token, "provider=x").as_deref(),
            Some("0191-id")
        );
        assert_eq!(decode(b"k1", &token, "provider=y"), None);
        assert_eq!(decode(b"k2", &token, "provider=x"), None);
        let mut tampered = token.clone().into_bytes();
        tampered[3] ^= 1;
        assert_eq!(
            decode(b"k1", &String::from_utf8_lossy(&tampered), "provider=x"),
            None
        );
    }
}
