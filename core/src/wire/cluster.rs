//! What the cluster tells of its own network, as the controller learns it from the Kubernetes
//! API and serves it to agents (`GET /api/v1/cluster/profile`). Agents add it to their profile,
//! so a cluster's pod and service ranges need not be written into the profile ConfigMap.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// The cluster's own ranges and DNS, each where the API tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterProfile {
    /// Every node's `spec.podCIDRs` (empty with CNIs that do not use them, e.g. Azure CNI
    /// with pods on the VNet).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub pod_cidrs: Vec<IpNet>,
    /// The ServiceCIDR objects' ranges (Kubernetes 1.33 and later).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub service_cidrs: Vec<IpNet>,
    /// The cluster's own Service addresses the ranges must cover: `default/kubernetes` and
    /// `kube-system/kube-dns`. Where no ServiceCIDR says the range, these are still internal.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub service_addresses: Vec<IpAddr>,
    /// Every node's InternalIP: nodes are internal even where the profile names no node subnet.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub node_addresses: Vec<IpAddr>,
    /// `kube-system/kube-dns`'s cluster addresses: the cluster's DNS service.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster DNS domain, from the controller pod's resolver search list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
    /// What the cluster did not tell, in words for a person (the profile then decides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl ClusterProfile {
    /// `profile` with what the cluster tells added: its ranges join the profile's (a range the
    /// profile names stays), its service addresses count as services where no range covers
    /// them, and its DNS domain replaces the profile's.
    pub fn fill(&self, profile: &Profile) -> Profile {
        let mut out = profile.clone();
        add_all(&mut out.pod_cidrs, &self.pod_cidrs);
        add_all(&mut out.service_cidrs, &self.service_cidrs);
        let services = uncovered(&self.service_addresses, &out.service_cidrs);
        add_all(&mut out.service_cidrs, &services);
        let nodes = uncovered(&self.node_addresses, &out.node_cidrs);
        add_all(&mut out.node_cidrs, &nodes);
        if let Some(domain) = &self.cluster_domain {
            out.cluster_domain = domain.clone();
        }
        out
    }
}

/// The addresses no range of `ranges` covers, each as a host range.
fn uncovered(addresses: &[IpAddr], ranges: &[IpNet]) -> Vec<IpNet> {
    addresses
        .iter()
        .filter(|ip| !ranges.iter().any(|n| n.contains(*ip)))
        .map(|ip| IpNet::from(*ip))
        .collect()
}

fn add_all(to: &mut Vec<IpNet>, from: &[IpNet]) {
    for n in from {
        if !to.contains(n) {
            to.push(*n);
        }
    }
}

/// The cluster DNS domain a pod's resolver search list shows (`NS.svc.DOMAIN svc.DOMAIN
/// DOMAIN`, as the kubelet writes it), from the text of its `/etc/resolv.conf`.
pub fn cluster_domain_from_resolv_conf(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("search") || l.starts_with("domain"))
        .flat_map(|l| l.split_whitespace().skip(1))
        .find_map(|d| d.strip_prefix("svc."))
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn the_cluster_adds_its_ranges_and_keeps_the_profiles() {
        let profile = Profile {
            pod_cidrs: vec![net("10.244.0.0/16")],
            service_cidrs: vec![net("10.0.0.0/16")],
            ..Profile::default()
        };
        let cluster = ClusterProfile {
            pod_cidrs: vec![net("10.244.0.0/16"), net("10.245.3.0/24")],
            service_addresses: vec!["10.0.0.1".parse().unwrap(), "10.96.0.10".parse().unwrap()],
            node_addresses: vec!["10.224.0.4".parse().unwrap()],
            cluster_domain: Some("corp.local".into()),
            ..ClusterProfile::default()
        };
        let filled = cluster.fill(&profile);
        assert_eq!(
            filled.pod_cidrs,
            vec![net("10.244.0.0/16"), net("10.245.3.0/24")]
        );
        // 10.0.0.1 is inside the profile's range; 10.96.0.10 is not and joins as a host.
        assert_eq!(
            filled.service_cidrs,
            vec![net("10.0.0.0/16"), net("10.96.0.10/32")]
        );
        assert_eq!(filled.node_cidrs, vec![net("10.224.0.4/32")]);
        assert_eq!(filled.cluster_domain, "corp.local");
    }

    #[test]
    fn the_domain_is_read_from_the_kubelets_search_list() {
        let pod = "search outflow.svc.cluster.local svc.cluster.local cluster.local \
                   abc.internal.cloudapp.net\nnameserver 10.0.0.10\noptions ndots:5\n";
        assert_eq!(
            cluster_domain_from_resolv_conf(pod).as_deref(),
            Some("cluster.local")
        );
        let node = "nameserver 168.63.129.16\nsearch abc.internal.cloudapp.net\n";
        assert_eq!(cluster_domain_from_resolv_conf(node), None);
    }
}
