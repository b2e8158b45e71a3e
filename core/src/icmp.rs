//! ICMP and ICMPv6 errors that reject a connection, and their names.
//!
//! Only destination-unreachable (ICMP type 3, ICMPv6 type 1) counts: it is what a route with
//! `prohibit`/`unreachable`, a firewall with `REJECT`, a closed UDP port, or a router with no route
//! sends back. The code is kept because it is the evidence: `host-prohibited` points at a firewall,
//! `port-unreachable` at a closed UDP port, `net-unreachable` at a missing route.

use std::net::IpAddr;

/// The reason an ICMP error gives, with the wire type and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason {
    /// ICMPv6 when true.
    pub v6: bool,
    /// ICMP code.
    pub code: u8,
}

impl Reason {
    /// A stable name for reports (`host-prohibited`, `port-unreachable`, …).
    pub fn name(self) -> &'static str {
        if self.v6 {
            match self.code {
                0 => "no-route",
                1 => "admin-prohibited",
                2 => "beyond-scope",
                3 => "address-unreachable",
                4 => "port-unreachable",
                5 => "source-policy-failed",
                6 => "reject-route",
                _ => "unreachable-other",
            }
        } else {
            match self.code {
                0 => "net-unreachable",
                1 => "host-unreachable",
                2 => "protocol-unreachable",
                3 => "port-unreachable",
                4 => "fragmentation-needed",
                5 => "source-route-failed",
                6 => "net-unknown",
                7 => "host-unknown",
                9 => "net-prohibited",
                10 => "host-prohibited",
                11 => "net-tos-unreachable",
                12 => "host-tos-unreachable",
                13 => "admin-prohibited",
                14 => "precedence-violation",
                15 => "precedence-cutoff",
                _ => "unreachable-other",
            }
        }
    }

    /// Whether the code says a policy (firewall, route type prohibit) refused the packet.
    pub fn is_prohibited(self) -> bool {
        if self.v6 {
            matches!(self.code, 1 | 5 | 6)
        } else {
            matches!(self.code, 9 | 10 | 13)
        }
    }

    /// Path MTU discovery messages are not rejections.
    pub fn is_mtu_signal(self) -> bool {
        !self.v6 && self.code == 4
    }
}

/// An ICMP error and the packet header it quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Who sent the ICMP error (a router, a firewall, or the destination itself).
    pub from: IpAddr,
    /// What it said.
    pub reason: Reason,
    /// Protocol of the quoted packet.
    pub proto: u8,
    /// Source of the quoted packet: our side.
    pub src: IpAddr,
    /// Destination of the quoted packet.
    pub dst: IpAddr,
    /// Source port of the quoted packet.
    pub sport: u16,
    /// Destination port of the quoted packet.
    pub dport: u16,
}

/// The reason for an ICMPv4 type/code, if it is a destination-unreachable.
pub fn v4_rejection(icmp_type: u8, code: u8) -> Option<Reason> {
    (icmp_type == 3).then_some(Reason { v6: false, code })
}

/// The reason for an ICMPv6 type/code, if it is a destination-unreachable.
pub fn v6_rejection(icmp_type: u8, code: u8) -> Option<Reason> {
    (icmp_type == 1).then_some(Reason { v6: true, code })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prohibit_route_code_is_named_and_is_a_policy() {
        let r = v4_rejection(3, 10).unwrap();
        assert_eq!(r.name(), "host-prohibited");
        assert!(r.is_prohibited());
        assert!(!v4_rejection(3, 3).unwrap().is_prohibited());
    }

    #[test]
    fn only_destination_unreachable_rejects() {
        assert!(v4_rejection(11, 0).is_none());
        assert!(v6_rejection(3, 0).is_none());
        assert_eq!(v6_rejection(1, 4).unwrap().name(), "port-unreachable");
    }
}
