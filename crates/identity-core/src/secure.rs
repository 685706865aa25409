//! The two primitives every secret here is made with. Each holds the one
//! `expect` of this crate, for a failure that has no safe answer but to
//! stop.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// HMAC-SHA-256 under `key`.
pub fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (longer ones are hashed, shorter ones
    // padded): `new_from_slice` cannot fail for it.
    #[allow(clippy::expect_used)]
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

/// `N` bytes from the operating system's random source.
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Without randomness no token, secret or key here would be safe to
    // hand out: stopping beats issuing predictable ones.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}
