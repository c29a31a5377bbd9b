//! Address lists and the classification of addresses Owl must not be steered to.
//!
//! Three settings are lists of networks: `notifications.allowed_networks` (internal targets a
//! channel may reach), `query_api.trusted_proxies` (whose `X-Forwarded-For` is believed) and
//! `alerts.ip_anomaly.never_block`. They share [`Networks`], which reads CIDRs (`10.0.0.0/8`,
//! `fd00::/8`) or bare addresses (one host) and compares IPv4-mapped IPv6 addresses as IPv4.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// A list of networks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Networks(Vec<IpNet>);

impl Networks {
    /// Parses each entry as a CIDR or a bare address.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Networks, String> {
        entries
            .iter()
            .map(|entry| parse_network(entry.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Networks)
    }

    /// Whether `ip` lies in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// These networks and `other`'s.
    pub fn and(&self, other: &Networks) -> Networks {
        Networks(self.0.iter().chain(&other.0).copied().collect())
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks.
    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.0.iter()
    }
}

fn parse_network(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    entry
        .parse::<IpAddr>()
        .map(|ip| IpNet::from(canonical(ip)))
        .map_err(|_| {
            format!("`{entry}` is not a network in CIDR notation such as 10.0.0.0/8 or an IP address")
        })
}

impl Serialize for Networks {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Networks::parse(&entries).map_err(de::Error::custom)
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", shown.join(", "))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries; any other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is loopback (127.0.0.0/8, ::1, or IPv4-mapped loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// Whether `ip` is not a public unicast address: loopback, unspecified, private (RFC 1918),
/// shared (100.64.0.0/10), link-local (169.254.0.0/16, fe80::/10, which holds cloud metadata
/// services), unique local (fc00::/7), site-local, multicast, broadcast, documentation and
/// reserved ranges, and IPv6 forms that embed one of those (IPv4-mapped, NAT64, 6to4).
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) carry an IPv4 address.
        || (segments[..6] == [0; 6] && is_internal_v4(embedded_v4(segments[6], segments[7])))
        || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_internal_v4(embedded_v4(segments[6], segments[7])))
        // 6to4 (2002::/16) carries an IPv4 address in its second and third segments.
        || (segments[0] == 0x2002 && is_internal_v4(embedded_v4(segments[1], segments[2])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_take_cidrs_and_bare_addresses() {
        let nets = Networks::parse(&["10.0.0.0/8", "192.168.1.7", "fd00::/8", "172.16.5.9/12"]).unwrap();
        assert!(nets.contains(ip("10.200.1.1")));
        assert!(nets.contains(ip("192.168.1.7")));
        assert!(!nets.contains(ip("192.168.1.8")));
        assert!(nets.contains(ip("fd12::1")));
        // Host bits are dropped: 172.16.5.9/12 is 172.16.0.0/12.
        assert!(nets.contains(ip("172.31.255.255")));
        // IPv4-mapped IPv6 compares as IPv4.
        assert!(nets.contains(ip("::ffff:10.1.2.3")));
        let err = Networks::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
        assert!(Networks::parse(&["example.com"]).is_err());
        assert!(Networks::parse(&[""]).is_err());
    }

    #[test]
    fn networks_join() {
        let a = Networks::parse(&["10.0.0.0/8"]).unwrap();
        let b = Networks::parse(&["192.168.0.0/16"]).unwrap();
        let both = a.and(&b);
        assert!(both.contains(ip("10.1.1.1")) && both.contains(ip("192.168.1.1")));
        assert!(!both.contains(ip("172.16.0.1")));
    }

    #[test]
    fn networks_round_trip_through_serde() {
        let nets: Networks = serde_json::from_str(r#"["127.0.0.0/8", "::1"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&nets).unwrap(),
            r#"["127.0.0.0/8","::1/128"]"#
        );
        let err = serde_json::from_str::<Networks>(r#"["nope"]"#).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "127.5.5.5",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::127.0.0.1",
        ] {
            assert!(is_internal(ip(internal)), "{internal} should be internal");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(!is_internal(ip(public)), "{public} should be public");
        }
        assert!(is_loopback(ip("::ffff:127.0.0.1")));
        assert!(!is_loopback(ip("10.0.0.1")));
    }
}
