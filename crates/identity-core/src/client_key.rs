//! The key that rate limits and throttling count a client under. One IPv4
//! address is one client, but an IPv6 customer is handed a whole /64 (or
//! more): keyed per /128, a single host would be an unlimited supply of
//! fresh counters. So IPv6 addresses are masked to a prefix.

use std::net::{IpAddr, Ipv6Addr};

/// Default IPv6 prefix length (IDENTITY_RATE_LIMIT_IPV6_PREFIX): one
/// subscriber's LAN.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// IPv4 as is; IPv6 (other than IPv4-mapped) masked to `ipv6_prefix` bits
/// and written as a CIDR. Text that is no address is kept as it is.
pub fn client_key(addr: &str, ipv6_prefix: u8) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                format!("{}/{prefix}", Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => addr.to_owned(),
    }
}

/// The coarse form of a client address that owners see in ListSessions:
/// the IPv4 /24 or IPv6 /48 it lies in (about a town or a provider's
/// customer block; enough to recognise a sign-in, too little to locate a
/// household or to learn a co-user's exact address). Text that is no
/// address shows nothing.
pub fn coarse_address(addr: &str) -> Option<String> {
    let v4 = |v4: std::net::Ipv4Addr| {
        let [a, b, c, _] = v4.octets();
        format!("{a}.{b}.{c}.0/24")
    };
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(addr) => Some(v4(addr)),
        IpAddr::V6(addr) => Some(match addr.to_ipv4_mapped() {
            Some(mapped) => v4(mapped),
            None => format!(
                "{}/48",
                Ipv6Addr::from(u128::from(addr) & (u128::MAX << 80))
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_see_the_ipv4_slash_24_and_the_ipv6_slash_48() {
        assert_eq!(
            coarse_address("203.0.113.9").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            coarse_address("::ffff:203.0.113.9").as_deref(),
            Some("203.0.113.0/24")
        );
        assert_eq!(
            coarse_address("2001:db8:7:9::1").as_deref(),
            Some("2001:db8:7::/48")
        );
        assert_eq!(coarse_address("::1").as_deref(), Some("::/48"));
        assert_eq!(coarse_address("unknown"), None);
        assert_eq!(coarse_address(""), None);
    }

    #[test]
    fn ipv6_hosts_of_one_prefix_share_a_key_and_ipv4_stays_per_address() {
        assert_eq!(
            client_key("2001:db8:7:9::1", 64),
            client_key("2001:db8:7:9:ffff:1:2:3", 64)
        );
        assert_eq!(client_key("2001:db8:7:9::1", 64), "2001:db8:7:9::/64");
        assert_ne!(
            client_key("2001:db8:7:9::1", 64),
            client_key("2001:db8:7:a::1", 64)
        );
        assert_eq!(client_key("2001:db8:7:9::1", 128), "2001:db8:7:9::1/128");
        assert_eq!(client_key("2001:db8:7:9::1", 0), "::/0");
        assert_eq!(client_key("203.0.113.9", 64), "203.0.113.9");
        assert_eq!(client_key("::ffff:203.0.113.9", 64), "203.0.113.9");
        assert_eq!(client_key("unknown", 64), "unknown");
    }
}
