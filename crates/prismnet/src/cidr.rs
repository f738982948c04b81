//! IPv4 networks (`10.0.0.0/24`): parsing, containment, overlap, host ranges — `ipnet`'s
//! `Ipv4Net` underneath, with prismnet's rule on top: a network is written with its host bits
//! clear (`10.0.0.1/24` is refused, naming `10.0.0.0/24`), never silently truncated.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network: its first address and prefix length. The address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(Ipv4Net);

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n`.
    #[error("{0:?} is not an IPv4 network like 10.0.0.0/24")]
    Syntax(String),
    /// Host bits set (`10.0.0.1/24`).
    #[error("{given} has host bits set; the network is {network}")]
    HostBits {
        /// What was given.
        given: String,
        /// The network it means.
        network: String,
    },
}

impl Cidr {
    /// The network `addr/prefix` (host bits must be clear).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        let net = Ipv4Net::new(addr, prefix).map_err(|_| CidrError::Syntax(format!("{addr}/{prefix}")))?;
        Self::checked(net)
    }

    fn checked(net: Ipv4Net) -> Result<Self, CidrError> {
        if net.addr() != net.network() {
            return Err(CidrError::HostBits { given: net.to_string(), network: net.trunc().to_string() });
        }
        Ok(Self(net))
    }

    /// The first address.
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The last address (broadcast).
    pub fn broadcast(&self) -> Ipv4Addr {
        self.0.broadcast()
    }

    /// The netmask.
    pub fn netmask(&self) -> Ipv4Addr {
        self.0.netmask()
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.0.contains(&ip)
    }

    /// Whether `other` lies entirely inside.
    pub fn contains_net(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }

    /// The usable host addresses (all but network and broadcast; every address of a /31 or /32).
    pub fn hosts(&self) -> (Ipv4Addr, Ipv4Addr) {
        let (first, last) = (u32::from(self.network()), u32::from(self.broadcast()));
        if self.prefix() >= 31 { (first.into(), last.into()) } else { ((first + 1).into(), (last - 1).into()) }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::checked(s.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The netmask of `prefix` as a number (the property tests' own arithmetic, not ipnet's).
    fn mask(prefix: u8) -> u32 {
        if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
    }

    #[test]
    fn parse_and_describe() {
        let c: Cidr = "10.1.2.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.2.0/24");
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 1, 2, 255));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.hosts(), (Ipv4Addr::new(10, 1, 2, 1), Ipv4Addr::new(10, 1, 2, 254)));
        assert!(c.contains(Ipv4Addr::new(10, 1, 2, 77)) && !c.contains(Ipv4Addr::new(10, 1, 3, 1)));
        let e = "10.1.2.3/24".parse::<Cidr>().unwrap_err();
        assert!(e.to_string().contains("10.1.2.0/24"), "{e}");
        for bad in ["10.1.2.0", "10.1.2.0/33", "10.1.2/24", "x/8", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!(Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 33).is_err());
        let small: Cidr = "10.0.0.4/31".parse().unwrap();
        assert_eq!(small.hosts(), (Ipv4Addr::new(10, 0, 0, 4), Ipv4Addr::new(10, 0, 0, 5)));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip_and_containment(a in any::<u32>(), p in 0u8..=32, x in any::<u32>()) {
            let c = Cidr::new(Ipv4Addr::from(a & mask(p)), p).unwrap();
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
            let ip = Ipv4Addr::from(x);
            prop_assert_eq!(c.contains(ip), u32::from(ip) >= u32::from(c.network()) && u32::from(ip) <= u32::from(c.broadcast()));
            let (lo, hi) = c.hosts();
            prop_assert!(c.contains(lo) && c.contains(hi) && lo <= hi);
        }

        #[test]
        fn overlap_is_symmetric_and_matches_addresses(a in any::<u32>(), p in 8u8..=32, b in any::<u32>(), q in 8u8..=32) {
            let x = Cidr::new(Ipv4Addr::from(a & mask(p)), p).unwrap();
            let y = Cidr::new(Ipv4Addr::from(b & mask(q)), q).unwrap();
            prop_assert_eq!(x.overlaps(&y), y.overlaps(&x));
            let shared = x.contains(y.network()) || y.contains(x.network());
            prop_assert_eq!(x.overlaps(&y), shared);
        }
    }
}
