//! The network profile: which address ranges are this cluster, peered VNets and on-premises.
//!
//! The profile is the YAML document of DESIGN.md §4.1 (a ConfigMap in a cluster). Every key is
//! optional; unknown keys and bad CIDRs are errors that name the line, because a typo in a profile
//! silently turns internal traffic into "public" and sends a person chasing the wrong firewall.
//! Turning addresses into categories is `category.rs`'s job.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// How traffic to public destinations leaves the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EgressType {
    /// Outbound rules of a public load balancer (AKS default).
    #[default]
    LoadBalancer,
    /// A NAT gateway on the node subnet.
    NatGateway,
    /// A route table sending 0.0.0.0/0 to a firewall or virtual appliance.
    UserDefinedRouting,
    /// An explicit HTTP proxy.
    Proxy,
}

impl EgressType {
    /// The label used in reports for destinations that leave through this path.
    pub fn label(self) -> &'static str {
        match self {
            EgressType::LoadBalancer => "loadBalancer",
            EgressType::NatGateway => "natGateway",
            EgressType::UserDefinedRouting => "firewall",
            EgressType::Proxy => "proxy",
        }
    }
}

/// Where the cluster runs. Next checks name a cloud's parts (NSGs, VNet peering, the Azure DNS
/// address 168.63.129.16, load balancer SNAT metrics) only when the profile says it is that
/// cloud; otherwise they speak of security groups, routes and the node's resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Any Kubernetes; no cloud is assumed.
    #[default]
    Generic,
    /// Azure Kubernetes Service (`aks`, or `azure`).
    #[serde(alias = "azure")]
    Aks,
}

/// The egress section of the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Egress {
    /// The kind of egress path.
    #[serde(rename = "type", default)]
    pub kind: EgressType,
    /// The firewall, appliance or proxy address (`host:port` for a proxy), if any.
    #[serde(default)]
    pub address: Option<String>,
}

/// The network profile of DESIGN.md §4.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    /// Pod address ranges of this cluster.
    #[serde(default, rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
    /// Service (ClusterIP) ranges.
    #[serde(default, rename = "serviceCIDRs")]
    pub service_cidrs: Vec<IpNet>,
    /// Node subnets, or the cluster's whole VNet.
    #[serde(default, rename = "nodeCIDRs")]
    pub node_cidrs: Vec<IpNet>,
    /// Address spaces of peered VNets.
    #[serde(default, rename = "peeredCIDRs")]
    pub peered_cidrs: Vec<IpNet>,
    /// Prefixes reached through VPN or ExpressRoute.
    #[serde(default, rename = "onPremCIDRs")]
    pub onprem_cidrs: Vec<IpNet>,
    /// The cluster DNS domain, for folding the resolver's search list.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// Extra resolver search domains beyond the cluster ones (e.g. a node's VNet domain).
    #[serde(default)]
    pub search_domains: Vec<String>,
    /// How public traffic leaves the cluster.
    #[serde(default)]
    pub egress: Egress,
    /// Where the cluster runs (`generic` or `aks`).
    #[serde(default)]
    pub platform: Platform,
}

fn default_cluster_domain() -> String {
    "cluster.local".to_string()
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            pod_cidrs: Vec::new(),
            service_cidrs: Vec::new(),
            node_cidrs: Vec::new(),
            peered_cidrs: Vec::new(),
            onprem_cidrs: Vec::new(),
            cluster_domain: default_cluster_domain(),
            search_domains: Vec::new(),
            egress: Egress::default(),
            platform: Platform::default(),
        }
    }
}

/// Why a profile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The YAML is malformed, has an unknown key, or a value of the wrong shape.
    #[error("{source_name} line {line}: {message}")]
    Invalid {
        /// Where the profile came from (a file name).
        source_name: String,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The document is malformed in a way the parser cannot place on a line.
    #[error("{source_name}: {message}")]
    Unplaced {
        /// Where the profile came from (a file name).
        source_name: String,
        /// What is wrong.
        message: String,
    },
}

impl Profile {
    /// Parses a profile from YAML text; `source_name` names it in errors.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Profile, ProfileError> {
        if text.trim().is_empty() {
            return Ok(Profile::default());
        }
        let profile: Profile = serde_yaml_ng::from_str(text).map_err(|e| {
            let message = explain(&e.to_string());
            match e.location() {
                Some(loc) => ProfileError::Invalid {
                    source_name: source_name.to_string(),
                    line: loc.line(),
                    message,
                },
                None => ProfileError::Unplaced {
                    source_name: source_name.to_string(),
                    message,
                },
            }
        })?;
        Ok(profile)
    }
}

/// Rewrites serde's messages into ones that say what to do.
fn explain(raw: &str) -> String {
    // serde_yaml_ng appends " at line L column C"; the line is reported separately.
    let msg = match raw.find(" at line ") {
        Some(i) => &raw[..i],
        None => raw,
    };
    if msg.contains("invalid IP address syntax") || msg.contains("invalid IP network") {
        return format!("{msg}: not a CIDR (e.g. 10.10.0.0/16)");
    }
    if msg.starts_with("unknown field") {
        return format!("{msg}; remove it or fix its spelling");
    }
    msg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_profile_parses() {
        let p = Profile::from_yaml(
            "podCIDRs: [10.244.0.0/16]\nserviceCIDRs: [10.0.0.0/16]\nnodeCIDRs: [10.224.0.0/16]\n\
             peeredCIDRs: [10.10.0.0/16]\nonPremCIDRs: [192.168.0.0/16]\nclusterDomain: cluster.local\n\
             egress: { type: natGateway }\n",
            "p.yaml",
        )
        .unwrap();
        assert_eq!(p.pod_cidrs[0].to_string(), "10.244.0.0/16");
        assert_eq!(p.egress.kind, EgressType::NatGateway);
    }

    #[test]
    fn bad_cidr_names_the_line() {
        let err = Profile::from_yaml(
            "podCIDRs: [10.244.0.0/16]\npeeredCIDRs:\n  - 10.0.0/16\n",
            "p.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("p.yaml line 3:"), "{err}");
        assert!(err.contains("not a CIDR"), "{err}");
    }

    #[test]
    fn unknown_key_names_the_line() {
        let err = Profile::from_yaml("podCIDRs: []\npodCIDR: [10.0.0.0/8]\n", "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("p.yaml line 2:"), "{err}");
        assert!(err.contains("podCIDR"), "{err}");
    }

    #[test]
    fn empty_profile_is_default() {
        assert_eq!(Profile::from_yaml("\n", "p").unwrap(), Profile::default());
    }
}
