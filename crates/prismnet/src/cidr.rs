//! IPv4 networks (`10.0.0.0/24`): parsing, containment, overlap, host ranges.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network: its first address and prefix length. The address has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: u32,
    prefix: u8,
}

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

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

impl Cidr {
    /// The network `addr/prefix` (host bits must be clear).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        let given = format!("{addr}/{prefix}");
        if prefix > 32 {
            return Err(CidrError::Syntax(given));
        }
        let a = u32::from(addr);
        if a & !mask(prefix) != 0 {
            let network = format!("{}/{prefix}", Ipv4Addr::from(a & mask(prefix)));
            return Err(CidrError::HostBits { given, network });
        }
        Ok(Self { network: a, prefix })
    }

    /// The first address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The last address (broadcast).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network | !mask(self.prefix))
    }

    /// The netmask.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.network
    }

    /// Whether `other` lies entirely inside.
    pub fn contains_net(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }

    /// The usable host addresses (all but network and broadcast; every address of a /31 or /32).
    pub fn hosts(&self) -> (Ipv4Addr, Ipv4Addr) {
        if self.prefix >= 31 {
            (self.network(), self.broadcast())
        } else {
            (Ipv4Addr::from(self.network + 1), Ipv4Addr::from(u32::from(self.broadcast()) - 1))
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s.split_once('/').ok_or_else(|| CidrError::Syntax(s.to_owned()))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?;
        let prefix: u8 = p.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?;
        if prefix > 32 {
            return Err(CidrError::Syntax(s.to_owned()));
        }
        Self::new(addr, prefix)
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
        let small: Cidr = "10.0.0.4/31".parse().unwrap();
        assert_eq!(small.hosts(), (Ipv4Addr::new(10, 0, 0, 4), Ipv4Addr::new(10, 0, 0, 5)));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip_and_containment(a in any::<u32>(), p in 0u8..=32, x in any::<u32>()) {
            let c = Cidr::new(Ipv4Addr::from(a & mask(p)), p).unwrap();
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
            let ip = Ipv4Addr::from(x);
            prop_assert_eq!(c.contains(ip), u32::from(ip) >= c.network && u32::from(ip) <= u32::from(c.broadcast()));
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
