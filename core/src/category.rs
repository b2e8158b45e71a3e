//! Classifies destinations as internal, peered, on-premises or public.
//!
//! The profile decides: pod, service and node ranges are `internal`, peered VNets `peered`, VPN and
//! ExpressRoute prefixes `onprem`, everything else `public`. With no profile at all, private ranges
//! (RFC 1918, RFC 4193, CGNAT, loopback) count as internal so an unconfigured analysis is still
//! roughly right. Well-known platform addresses get a label on top of their category.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// Where a destination sits relative to the cluster (DESIGN.md §3, a contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Pods, services and nodes of this cluster.
    Internal,
    /// A peered VNet.
    Peered,
    /// On-premises, through VPN or ExpressRoute.
    #[serde(rename = "onprem")]
    OnPrem,
    /// Everything else: leaves through the load balancer, NAT gateway, firewall or proxy.
    Public,
}

impl Category {
    /// Every category, in the contract's order.
    pub const ALL: [Category; 4] = [
        Category::Internal,
        Category::Peered,
        Category::OnPrem,
        Category::Public,
    ];

    /// The contract spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Internal => "internal",
            Category::Peered => "peered",
            Category::OnPrem => "onprem",
            Category::Public => "public",
        }
    }
}

/// Azure's virtual public IP for DNS, DHCP and health probes.
pub const AZURE_WIRESERVER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(168, 63, 129, 16));
/// The instance metadata service.
pub const AZURE_IMDS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254));

/// Classifies addresses with a profile.
#[derive(Debug, Clone)]
pub struct Classifier {
    internal: Vec<IpNet>,
    peered: Vec<IpNet>,
    onprem: Vec<IpNet>,
    has_ranges: bool,
    egress_label: &'static str,
    platform: crate::profile::Platform,
}

impl Classifier {
    /// Builds a classifier from a profile.
    pub fn new(profile: &Profile) -> Classifier {
        let internal: Vec<IpNet> = profile
            .pod_cidrs
            .iter()
            .chain(&profile.service_cidrs)
            .chain(&profile.node_cidrs)
            .copied()
            .collect();
        let has_ranges = !(internal.is_empty()
            && profile.peered_cidrs.is_empty()
            && profile.onprem_cidrs.is_empty());
        Classifier {
            internal,
            peered: profile.peered_cidrs.clone(),
            onprem: profile.onprem_cidrs.clone(),
            has_ranges,
            egress_label: profile.egress.kind.label(),
            platform: profile.platform,
        }
    }

    /// The category of an address.
    pub fn category(&self, ip: IpAddr) -> Category {
        if ip.is_loopback() {
            return Category::Internal;
        }
        if !self.has_ranges {
            return if is_private(ip) {
                Category::Internal
            } else {
                Category::Public
            };
        }
        // Most specific first would need longest-prefix matching; profiles are small and their
        // ranges do not overlap in practice, so internal wins, then on-prem, then peered.
        if self.internal.iter().any(|n| n.contains(&ip)) {
            Category::Internal
        } else if self.onprem.iter().any(|n| n.contains(&ip)) {
            Category::OnPrem
        } else if self.peered.iter().any(|n| n.contains(&ip)) {
            Category::Peered
        } else {
            Category::Public
        }
    }

    /// A label for well-known platform addresses, if `ip` is one.
    pub fn platform_label(&self, ip: IpAddr) -> Option<&'static str> {
        if ip == AZURE_WIRESERVER {
            Some("azure-dns")
        } else if ip == AZURE_IMDS {
            Some("azure-imds")
        } else {
            None
        }
    }

    /// Where the cluster runs, which decides the words of next checks.
    pub fn platform(&self) -> crate::profile::Platform {
        self.platform
    }

    /// The egress path public destinations take, as labelled in reports.
    pub fn egress_label(&self) -> &'static str {
        self.egress_label
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn profile_ranges_decide_the_category() {
        let p = Profile::from_yaml(
            "podCIDRs: [10.244.0.0/16]\nserviceCIDRs: [10.0.0.0/16]\npeeredCIDRs: [10.10.0.0/16]\n\
             onPremCIDRs: [192.168.0.0/16]\n",
            "p",
        )
        .unwrap();
        let c = Classifier::new(&p);
        assert_eq!(c.category(ip("10.244.3.4")), Category::Internal);
        assert_eq!(c.category(ip("10.0.0.10")), Category::Internal);
        assert_eq!(c.category(ip("10.10.1.1")), Category::Peered);
        assert_eq!(c.category(ip("192.168.5.5")), Category::OnPrem);
        assert_eq!(c.category(ip("172.16.0.1")), Category::Public);
        assert_eq!(c.category(ip("203.0.113.7")), Category::Public);
    }

    #[test]
    fn without_a_profile_private_ranges_are_internal() {
        let c = Classifier::new(&Profile::default());
        assert_eq!(c.category(ip("10.1.2.3")), Category::Internal);
        assert_eq!(c.category(ip("fd00::1")), Category::Internal);
        assert_eq!(c.category(ip("198.51.100.1")), Category::Public);
    }

    #[test]
    fn azure_platform_addresses_are_labelled() {
        let c = Classifier::new(&Profile::default());
        assert_eq!(c.platform_label(ip("168.63.129.16")), Some("azure-dns"));
        assert_eq!(c.platform_label(ip("169.254.169.254")), Some("azure-imds"));
        assert_eq!(c.platform_label(ip("1.1.1.1")), None);
    }
}
