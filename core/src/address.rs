//! How addresses are compared for bans and counted for per-address limits.
//!
//! Two rules, in one place:
//!
//! - an IPv4-mapped IPv6 address (`::ffff:127.0.0.2`, what a dual-stack
//!   listener reports for an IPv4 client) is the IPv4 address it carries,
//!   so a ban or a limit on `127.0.0.2` applies however the client came in;
//! - for per-address limits (connections, rate, rooms created), IPv6
//!   addresses count by network: one person or host is usually given a
//!   whole /64, and counting single addresses would let them take 2^64
//!   slots.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The address as bans see it.
pub fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// The key under which per-address limits count `address`: the IPv4
/// address itself, or the IPv6 network of `ipv6_prefix` bits holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddressGroup {
    network: IpAddr,
    prefix: u8,
}

impl AddressGroup {
    /// The group of `address` (canonicalised first).
    pub fn of(address: IpAddr, ipv6_prefix: u8) -> Self {
        match canonical(address) {
            IpAddr::V4(v4) => Self {
                network: IpAddr::V4(v4),
                prefix: 32,
            },
            IpAddr::V6(v6) => {
                let prefix = ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                Self {
                    network: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix,
                }
            }
        }
    }
}

impl fmt::Display for AddressGroup {
    /// `203.0.113.7` for IPv4 (and a /128), `2001:db8::/64` for a network.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.network {
            IpAddr::V6(_) if self.prefix < 128 => write!(f, "{}/{}", self.network, self.prefix),
            network => write!(f, "{network}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        assert_eq!(canonical(ip("::ffff:127.0.0.2")), ip("127.0.0.2"));
        assert_eq!(
            AddressGroup::of(ip("::ffff:127.0.0.2"), 64),
            AddressGroup::of(ip("127.0.0.2"), 64)
        );
    }

    #[test]
    fn ipv6_addresses_in_one_network_share_a_group() {
        let a = AddressGroup::of(ip("2001:db8:1:2::1"), 64);
        let b = AddressGroup::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64);
        let other = AddressGroup::of(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_ne!(
            AddressGroup::of(ip("::1"), 128),
            AddressGroup::of(ip("::2"), 128)
        );
        assert_eq!(AddressGroup::of(ip("::1"), 128).to_string(), "::1");
        assert_eq!(AddressGroup::of(ip("10.0.0.1"), 64).to_string(), "10.0.0.1");
        assert_eq!(AddressGroup::of(ip("2001:db8::1"), 1).to_string(), "::/1");
    }
}
